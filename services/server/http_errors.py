"""HTTP error handling: the JSON error body, the mapping of errors to statuses, the size limit."""

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chronoverse.errors import (
    AuthenticationError,
    BusyError,
    ChronoverseError,
    ConflictError,
    FieldError,
    ForbiddenError,
    InvalidFieldsError,
    NotFoundError,
    RateLimitedError,
)
from chronoverse.secrets import SecretError
from services.server.schemas import ErrorOut

logger = logging.getLogger(__name__)

ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorOut, "description": text}
    for status, text in {
        400: "The body is not valid JSON.",
        401: "No valid bearer token.",
        404: "No such resource for this user.",
        409: (
            "Conflicts with the resource's state or an earlier Idempotency-Key, a per-user "
            "quota is used up (`quota_exceeded`), or a stored secret cannot be decrypted "
            "(`secret_unreadable`)."
        ),
        413: "The request body is over the size limit.",
        415: "The body is not sent as `Content-Type: application/json`.",
        422: "Invalid fields; `details` names each.",
    }.items()
}
# What login and registration may also answer.
AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorOut, "description": text}
    for status, text in {
        403: "Registration is closed (`registration_closed`): see CHRONOVERSE_REGISTRATION.",
        429: (
            "Too many attempts from this address or for this email (`rate_limited`); the "
            "Retry-After header says in how many seconds to try again."
        ),
        503: (
            "Every password-hashing slot stayed busy (`busy`); Retry-After says when to try again."
        ),
    }.items()
}
# What a manual run may also answer.
RUN_LIMITED: dict[int | str, dict[str, Any]] = {
    429: {
        "model": ErrorOut,
        "description": (
            "Over CHRONOVERSE_MANUAL_RUNS_PER_MINUTE for this user (`rate_limited`); the "
            "Retry-After header says in how many seconds to try again."
        ),
    }
}
# What a 405's Allow header may list: every method some route of the path answers.
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def secret_unreadable_message(exc: SecretError) -> str:
    """What a client is told when a stored secret value cannot be opened (HTTP and gRPC)."""
    return (
        f"a stored secret value cannot be decrypted with the configured keys ({exc}); the "
        "operator must run `chronoverse migrate` (values stored before encryption) or restore "
        "the key it was sealed with to CHRONOVERSE_SECRET_KEYS"
    )


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
    """Refuse bodies over the limit with 413, by Content-Length or while streaming.

    A chunked body has no Content-Length, so the body is read here, up to the limit, before the
    application runs: an error raised from inside the application's own body read would reach
    the client as FastAPI's 400 "error parsing the body" instead.
    """

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
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await too_large(scope, receive, send)
            return
        read: list[Message] = []
        received = 0
        while True:
            message = await receive()
            read.append(message)
            if message["type"] != "http.request":  # the client went away
                break
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                await too_large(scope, receive, send)
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return read.pop(0) if read else await receive()

        await self.app(scope, replay, send)


def allowed_methods(request: Request) -> list[str]:
    """The methods the request's path answers: each asked of the router as routing would."""
    # Not a walk over route paths: FastAPI nests included routers, and only they know their prefix.
    routes = request.app.router.routes

    def answers(method: str) -> bool:
        probe = {**request.scope, "method": method}
        return any(route.matches(probe)[0] is Match.FULL for route in routes)

    return [method for method in _METHODS if answers(method)]


def unsupported_media_type(request: Request) -> JSONResponse:
    """A body FastAPI did not parse as JSON because its Content-Type is missing or another."""
    sent = request.headers.get("content-type")
    as_sent = f"was sent as {sent!r}" if sent else "was sent without a Content-Type"
    return error_response(
        415,
        "unsupported_media_type",
        "the request body must be JSON sent with `Content-Type: application/json`",
        [FieldError("body", f"{as_sent}; send it with `Content-Type: application/json`")],
    )


def install_error_handlers(app: FastAPI) -> None:
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

    async def secret_unreadable(request: Request, exc: Exception) -> JSONResponse:
        # Not a 500: the server works, but this resource's stored secrets need the operator.
        assert isinstance(exc, SecretError)
        logger.warning(
            "stored secret unreadable on %s %s: %s",
            request.method,
            request.url.path,
            exc,
            extra={"action": "secret_unreadable"},
        )
        return error_response(409, "secret_unreadable", secret_unreadable_message(exc))

    async def forbidden(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ForbiddenError)
        return error_response(403, exc.code, exc.message)

    async def rate_limited(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RateLimitedError | BusyError)
        status, code = (429, "rate_limited") if isinstance(exc, RateLimitedError) else (503, "busy")
        response = error_response(status, code, exc.message)
        response.headers["Retry-After"] = str(exc.retry_after_s)
        return response

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
            if loc == ["body"] and isinstance(error.get("input"), bytes):
                # FastAPI parses a body as JSON only when its Content-Type says so.
                return unsupported_media_type(request)
            path = ".".join(loc[1:]) or where
            message = str(error.get("msg", "is invalid"))
            if error.get("type") == "extra_forbidden":
                message = "is not a known field"
            elif loc == ["body"] and error.get("type") == "missing":
                path, message = "body", "a JSON object body is required"
            elif loc == ["body"] and error.get("type") == "model_attributes_type":
                message = "must be a JSON object"
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
            response.headers["Allow"] = ", ".join(allowed_methods(request))
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
    app.add_exception_handler(SecretError, secret_unreadable)
    app.add_exception_handler(AuthenticationError, unauthenticated)
    app.add_exception_handler(ForbiddenError, forbidden)
    app.add_exception_handler(RateLimitedError, rate_limited)
    app.add_exception_handler(BusyError, rate_limited)
    app.add_exception_handler(RequestValidationError, request_validation)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(ChronoverseError, unexpected)
    app.add_exception_handler(Exception, unexpected)
