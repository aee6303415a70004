"""The HTTP/JSON API: routes, authentication, errors and limits."""

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any
from uuid import UUID

from fastapi import Depends, FastAPI, Header, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chronoverse import __version__
from chronoverse.checks import postgres_check, redis_check
from chronoverse.domain import BuildStatus, WorkflowKind
from chronoverse.errors import (
    AuthenticationError,
    ChronoverseError,
    ConflictError,
    FieldError,
    InvalidFieldsError,
    NotFoundError,
)
from chronoverse.health import run_checks
from services.server import idempotency, workflows
from services.server.auth import Principal
from services.server.context import ServerContext
from services.server.schemas import (
    MAX_PAGE_SIZE,
    Credentials,
    ErrorOut,
    TokenOut,
    UserOut,
    WorkflowCreate,
    WorkflowOut,
    WorkflowPage,
    WorkflowUpdate,
)

logger = logging.getLogger(__name__)

ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorOut, "description": text}
    for status, text in {
        400: "The body is not valid JSON.",
        401: "No valid bearer token.",
        404: "No such resource for this user.",
        409: "Conflicts with the resource's state or an earlier Idempotency-Key.",
        413: "The request body is over the size limit.",
        422: "Invalid fields; `details` names each.",
    }.items()
}


def error_response(
    status: int, code: str, message: str, details: list[FieldError] | None = None
) -> JSONResponse:
    return JSONResponse(
        {
            "error": {
                "code": code,
                "message": message,
                "details": [d.as_dict() for d in details or []],
            }
        },
        status_code=status,
    )


class BodySizeLimit:
    """Refuse bodies over the limit with 413, by Content-Length or while streaming."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = error_response(
            413, "request_too_large", f"request bodies are limited to {self.max_bytes} bytes"
        )
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await too_large(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLarge
            return message

        try:
            await self.app(scope, limited_receive, send)
        except _BodyTooLarge:
            await too_large(scope, receive, send)


class _BodyTooLarge(Exception):
    pass


def create_app(context: ServerContext) -> FastAPI:
    settings = context.settings

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        context.open()
        yield

    app = FastAPI(
        title="Chronoverse",
        version=__version__,
        summary="Scheduled HEARTBEAT and CONTAINER workflows, their jobs and live logs.",
        lifespan=lifespan,
    )
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_bytes)
    _install_error_handlers(app)
    bearer = HTTPBearer(auto_error=False, description="A token from POST /auth/login.")

    def principal(
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
            description="Replays the first response for the same key "
            "and body; a different body is 409. Keys expire after 24 hours by default.",
        ),
    ]

    # --- operations ---------------------------------------------------------------------------

    checks = [postgres_check(settings), redis_check(settings)]

    @app.get("/healthz", tags=["operations"], summary="Liveness: the process serves requests.")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["operations"],
        summary="Readiness: Postgres and Redis answer.",
        responses={503: {"description": "A dependency is unavailable; `checks` names it."}},
    )
    async def readyz() -> JSONResponse:
        ready, results = await asyncio.to_thread(run_checks, checks)
        return JSONResponse(
            {"status": "ready" if ready else "not_ready", "checks": results},
            status_code=200 if ready else 503,
        )

    @app.get(
        "/metrics",
        tags=["operations"],
        summary="Prometheus metrics.",
        response_class=PlainTextResponse,
        responses={200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {}}}},
    )
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    # --- auth ---------------------------------------------------------------------------------

    @app.post(
        "/auth/register",
        status_code=201,
        tags=["auth"],
        response_model=UserOut,
        summary="Create an account.",
        responses=ERRORS,
    )
    def register(body: Credentials) -> UserOut:
        user = context.accounts.register(body.email, body.password)
        return UserOut(id=user.id, email=user.email, created_at=user.created_at)

    @app.post(
        "/auth/login",
        tags=["auth"],
        response_model=TokenOut,
        responses=ERRORS,
        summary="Exchange email and password for a bearer token.",
    )
    def login(body: Credentials) -> TokenOut:
        issued = context.accounts.login(body.email, body.password)
        return TokenOut(token=issued.token, expires_at=issued.expires_at)

    @app.post(
        "/auth/logout",
        status_code=204,
        tags=["auth"],
        responses=ERRORS,
        summary="Revoke the token this request presents.",
    )
    def logout(who: Auth) -> Response:
        context.accounts.revoke(who)
        return Response(status_code=204)

    # --- workflows ----------------------------------------------------------------------------

    @app.post(
        "/workflows",
        status_code=201,
        tags=["workflows"],
        response_model=WorkflowOut,
        responses=ERRORS,
        summary="Create a HEARTBEAT or CONTAINER workflow.",
    )
    def create_workflow(
        body: WorkflowCreate, who: Auth, key: IdempotencyKey = None
    ) -> JSONResponse:
        def operation(conn: workflows.Conn) -> tuple[int, Any]:
            created = workflows.create(conn, who.user_id, body)
            return 201, WorkflowOut.of(created).model_dump(mode="json")

        return _idempotent(who, key, "POST", "/workflows", body.model_dump_json(), operation)

    @app.get(
        "/workflows",
        tags=["workflows"],
        response_model=WorkflowPage,
        responses=ERRORS,
        summary="List workflows, newest first, a page at a time.",
    )
    def list_workflows(
        who: Auth,
        kind: WorkflowKind | None = None,
        build_status: BuildStatus | None = None,
        terminated: bool | None = None,
        name: Annotated[
            str | None,
            Query(max_length=200, description="Substring of the name, case-insensitive."),
        ] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 50,
        cursor: Annotated[str | None, Query(max_length=512)] = None,
    ) -> WorkflowPage:
        query = workflows.ListFilter(
            kind=kind,
            build_status=build_status,
            terminated=terminated,
            name_contains=name,
            limit=limit,
            cursor=cursor,
        )
        with context.transaction() as conn:
            page = workflows.list_page(conn, who.user_id, query)
        return WorkflowPage(
            workflows=[WorkflowOut.of(w) for w in page.workflows], next_cursor=page.next_cursor
        )

    @app.get(
        "/workflows/{workflow_id}",
        tags=["workflows"],
        response_model=WorkflowOut,
        responses=ERRORS,
        summary="Get one workflow.",
    )
    def get_workflow(workflow_id: UUID, who: Auth) -> WorkflowOut:
        with context.transaction() as conn:
            return WorkflowOut.of(workflows.get(conn, who.user_id, workflow_id))

    @app.put(
        "/workflows/{workflow_id}",
        tags=["workflows"],
        response_model=WorkflowOut,
        responses=ERRORS,
        summary="Change name, payload, interval or failure limit; omitted fields are kept. "
        "A changed CONTAINER payload queues a rebuild of a new generation.",
    )
    def update_workflow(workflow_id: UUID, body: WorkflowUpdate, who: Auth) -> WorkflowOut:
        with context.transaction() as conn:
            return WorkflowOut.of(workflows.update(conn, who.user_id, workflow_id, body))

    @app.post(
        "/workflows/{workflow_id}/terminate",
        tags=["workflows"],
        response_model=WorkflowOut,
        responses=ERRORS,
        summary="Terminate: no new jobs, pending ones are cancelled. Final; history is kept.",
    )
    def terminate_workflow(
        workflow_id: UUID, who: Auth, key: IdempotencyKey = None
    ) -> JSONResponse:
        def operation(conn: workflows.Conn) -> tuple[int, Any]:
            done = workflows.terminate(conn, who.user_id, workflow_id)
            return 200, WorkflowOut.of(done).model_dump(mode="json")

        path = f"/workflows/{workflow_id}/terminate"
        return _idempotent(who, key, "POST", path, "", operation)

    @app.delete(
        "/workflows/{workflow_id}",
        status_code=204,
        tags=["workflows"],
        responses=ERRORS,
        summary="Terminate, then delete the workflow with its jobs and logs.",
    )
    def delete_workflow(workflow_id: UUID, who: Auth) -> Response:
        with context.transaction() as conn:
            workflows.delete(conn, who.user_id, workflow_id)
        return Response(status_code=204)

    def _idempotent(
        who: Principal,
        key: str | None,
        method: str,
        path: str,
        canonical: str,
        operation: Callable[[workflows.Conn], tuple[int, Any]],
    ) -> JSONResponse:
        with context.transaction() as conn:
            outcome = idempotency.run(
                conn,
                user_id=who.user_id,
                key=key,
                request_fingerprint=idempotency.fingerprint(method, path, canonical),
                ttl_s=settings.idempotency_key_ttl_s,
                operation=operation,
            )
        headers = {"Idempotent-Replayed": "true"} if outcome.replayed else {}
        return JSONResponse(outcome.body, status_code=outcome.status_code, headers=headers)

    return app


def _install_error_handlers(app: FastAPI) -> None:
    def handler(status: int, code: str) -> Callable[[Request, Exception], Awaitable[JSONResponse]]:
        async def handle(request: Request, exc: Exception) -> JSONResponse:
            return error_response(status, code, str(exc))

        return handle

    async def invalid_fields(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, InvalidFieldsError)
        return error_response(422, "invalid_fields", "the request has invalid fields", exc.errors)

    async def conflict(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ConflictError)
        return error_response(409, exc.code, exc.message)

    async def unauthenticated(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, AuthenticationError)
        response = error_response(401, "unauthenticated", exc.message)
        response.headers["WWW-Authenticate"] = "Bearer"
        return response

    async def request_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        details = []
        for error in exc.errors():
            if error.get("type") == "json_invalid":
                return error_response(400, "malformed_json", "the request body is not valid JSON")
            loc = [str(p) for p in error.get("loc", ())]
            where = loc[0] if loc else "body"
            path = ".".join(loc[1:]) or where
            message = str(error.get("msg", "is invalid"))
            if error.get("type") == "extra_forbidden":
                message = "is not a known field"
            elif error.get("type") == "missing" and where == "body" and len(loc) == 1:
                path, message = "body", "a JSON object body is required"
            details.append(FieldError(path, message.removeprefix("Value error, ")))
        return error_response(422, "invalid_fields", "the request has invalid fields", details)

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        codes = {404: "not_found", 405: "method_not_allowed"}
        response = error_response(
            exc.status_code, codes.get(exc.status_code, "http_error"), str(exc.detail)
        )
        response.headers.update(exc.headers or {})
        if exc.status_code == 405:
            # Starlette names only the first matching route's methods; list every route's.
            path = request.url.path
            methods = {
                method
                for route in request.app.router.routes
                if isinstance(route, APIRoute) and route.path_regex.match(path)
                for method in (route.methods or set()) - {"HEAD"}
            }
            response.headers["Allow"] = ", ".join(sorted(methods))
        return response

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.error(
            "unhandled error on %s %s",
            request.method,
            request.url.path,
            exc_info=exc,
            extra={"action": "http_unhandled"},
        )
        return error_response(500, "internal", "internal error; it has been logged")

    app.add_exception_handler(InvalidFieldsError, invalid_fields)
    app.add_exception_handler(NotFoundError, handler(404, "not_found"))
    app.add_exception_handler(ConflictError, conflict)
    app.add_exception_handler(AuthenticationError, unauthenticated)
    app.add_exception_handler(RequestValidationError, request_validation)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(ChronoverseError, unexpected)
    app.add_exception_handler(Exception, unexpected)
