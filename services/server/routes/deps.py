"""What the HTTP routes depend on: the application layer, the caller, the Idempotency-Key, and the
rule that a query parameter the route does not know is an error, not silently ignored."""

from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

from chronoverse.accounts import Principal
from chronoverse.errors import AuthenticationError, FieldError, InvalidFieldsError
from services.server.context import ServerContext
from services.server.schemas import IDEMPOTENCY_KEY_DOC, IDEMPOTENCY_KEY_PATTERN
from services.server.usecases import Application, Replayable

bearer = HTTPBearer(auto_error=False, description="A token from POST /auth/login.")


def get_application(request: Request) -> Application:
    application = request.app.state.application
    assert isinstance(application, Application)
    return application


Api = Annotated[Application, Depends(get_application)]


def get_context(request: Request) -> ServerContext:
    return get_application(request).context


Context = Annotated[ServerContext, Depends(get_context)]


def principal(
    api: Api,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    if credentials is None:
        raise AuthenticationError()
    return api.accounts.authenticate(f"{credentials.scheme} {credentials.credentials}")


Auth = Annotated[Principal, Depends(principal)]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key", pattern=IDEMPOTENCY_KEY_PATTERN, description=IDEMPOTENCY_KEY_DOC
    ),
]


def replay_response(result: Replayable) -> JSONResponse:
    """An idempotent POST's answer, marked when it is a stored response replayed."""
    headers = {"Idempotent-Replayed": "true"} if result.replayed else {}
    return JSONResponse(result.body, status_code=result.status_code, headers=headers)


_QUERY_NAMES: dict[str, frozenset[str]] = {}


def _query_names(route: APIRoute) -> frozenset[str]:
    """The query parameters a route takes, its dependencies' and query models' included."""
    if (known := _QUERY_NAMES.get(route.unique_id)) is not None:
        return known
    names: set[str] = set()
    dependants = [route.dependant]
    while dependants:
        dependant = dependants.pop()
        dependants.extend(dependant.dependencies)
        for field in dependant.query_params:
            model = field.field_info.annotation
            if isinstance(model, type) and issubclass(model, BaseModel):
                names.update(info.alias or name for name, info in model.model_fields.items())
            else:
                names.add(field.alias)
    return _QUERY_NAMES.setdefault(route.unique_id, frozenset(names))


def known_query_parameters(request: Request) -> None:
    """Refuse query parameters the route does not take: a typo in a filter must not list all."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    unknown = sorted(set(request.query_params) - _query_names(route))
    if unknown:
        raise InvalidFieldsError(
            [FieldError(name, "is not a query parameter of this operation") for name in unknown]
        )
