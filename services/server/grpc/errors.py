"""How the gRPC edge answers errors: Chronoverse errors to status codes, field details included."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from chronoverse.errors import (
    AuthenticationError,
    BusyError,
    ConflictError,
    FieldError,
    ForbiddenError,
    InvalidFieldsError,
    NotFoundError,
    QuotaExceededError,
    RateLimitedError,
)
from chronoverse.secrets import SecretError
from services.server.http_errors import secret_unreadable_message

logger = logging.getLogger(__name__)
R = TypeVar("R")
# Conflicts that mean "it exists already" rather than "not in a state for this".
_ALREADY_EXISTS = {"email_taken"}


def abort(
    context: grpc.ServicerContext,
    code: grpc.StatusCode,
    message: str,
    fields: list[FieldError] | None = None,
    retry_after_s: int | None = None,
) -> None:
    """End the call with ``code``; invalid fields travel as a google.rpc.BadRequest detail, and
    when to try again (HTTP's Retry-After) as a google.rpc.RetryInfo detail."""
    status = status_pb2.Status(code=code.value[0], message=message)
    if retry_after_s is not None:
        retry = any_pb2.Any()
        retry.Pack(
            error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=retry_after_s))
        )
        status.details.append(retry)
    if fields:
        detail = any_pb2.Any()
        detail.Pack(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field=f.field, description=f.message
                    )
                    for f in fields
                ]
            )
        )
        status.details.append(detail)
    context.abort_with_status(rpc_status.to_status(status))


def status_of(exc: Exception) -> tuple[grpc.StatusCode, str, list[FieldError] | None]:
    """The status an error is answered with (the gRPC twin of the HTTP error handlers)."""
    if isinstance(exc, InvalidFieldsError):
        return grpc.StatusCode.INVALID_ARGUMENT, str(exc), exc.errors
    if isinstance(exc, NotFoundError):
        return grpc.StatusCode.NOT_FOUND, str(exc), None
    if isinstance(exc, QuotaExceededError):
        # HTTP's 409 quota_exceeded: gRPC's own code for a per-user quota used up.
        return grpc.StatusCode.RESOURCE_EXHAUSTED, exc.message, None
    if isinstance(exc, ConflictError):
        code = (
            grpc.StatusCode.ALREADY_EXISTS
            if exc.code in _ALREADY_EXISTS
            else grpc.StatusCode.FAILED_PRECONDITION
        )
        return code, exc.message, None
    if isinstance(exc, AuthenticationError):
        return grpc.StatusCode.UNAUTHENTICATED, exc.message, None
    if isinstance(exc, ForbiddenError):
        return grpc.StatusCode.PERMISSION_DENIED, exc.message, None
    if isinstance(exc, RateLimitedError):
        return grpc.StatusCode.RESOURCE_EXHAUSTED, exc.message, None
    if isinstance(exc, BusyError):
        return grpc.StatusCode.UNAVAILABLE, exc.message, None
    if isinstance(exc, SecretError):
        # As HTTP's 409 secret_unreadable: the operator must migrate or restore the key.
        return grpc.StatusCode.FAILED_PRECONDITION, secret_unreadable_message(exc), None
    return grpc.StatusCode.INTERNAL, "internal error; it has been logged", None


def handles_errors(method: Callable[..., R]) -> Callable[..., R]:
    """Answer what a method raises with its status; anything unexpected is INTERNAL and logged."""

    @functools.wraps(method)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> R:
        try:
            return method(self, request, context)
        except Exception as exc:
            code, message, fields = status_of(exc)
            if code is grpc.StatusCode.INTERNAL:
                logger.error(
                    "unhandled error in %s",
                    method.__name__,
                    exc_info=exc,
                    extra={"action": "grpc_unhandled"},
                )
            elif isinstance(exc, SecretError):
                logger.warning(
                    "stored secret unreadable in %s: %s",
                    method.__name__,
                    exc,
                    extra={"action": "secret_unreadable"},
                )
            retry_after = (
                exc.retry_after_s if isinstance(exc, RateLimitedError | BusyError) else None
            )
            abort(context, code, message, fields, retry_after)
        raise AssertionError("unreachable: abort raises")

    return wrapper
