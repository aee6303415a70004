"""What routes depend on: the server context, the caller, the Idempotency-Key."""

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, Header, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from chronoverse.accounts import Principal
from chronoverse.errors import AuthenticationError
from chronoverse.postgres import Conn
from services.server.context import ServerContext
from services.server.store import idempotency

bearer = HTTPBearer(auto_error=False, description="A token from POST /auth/login.")


def get_context(request: Request) -> ServerContext:
    context = request.app.state.context
    assert isinstance(context, ServerContext)
    return context


Context = Annotated[ServerContext, Depends(get_context)]


def principal(
    context: Context,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    if credentials is None:
        raise AuthenticationError()
    return context.accounts.authenticate(f"{credentials.scheme} {credentials.credentials}")


Auth = Annotated[Principal, Depends(principal)]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="Replays the first response for the same key and request; a different "
        "request is 409. Keys expire after 24 hours by default.",
    ),
]


def run_idempotent(
    context: ServerContext,
    who: Principal,
    key: str | None,
    fingerprint: bytes,
    operation: Callable[[Conn], tuple[int, Any]],
) -> JSONResponse:
    """Run a POST once per Idempotency-Key, in one transaction with its stored response."""
    with context.transaction() as conn:
        outcome = idempotency.run(
            conn,
            user_id=who.user_id,
            key=key,
            request_fingerprint=fingerprint,
            ttl_s=context.settings.idempotency_key_ttl_s,
            operation=operation,
        )
    headers = {"Idempotent-Replayed": "true"} if outcome.replayed else {}
    return JSONResponse(outcome.body, status_code=outcome.status_code, headers=headers)
