"""The gRPC edge answers each error class with the status its HTTP twin implies."""

import grpc
import pytest

from chronoverse.errors import (
    AuthenticationError,
    ConflictError,
    FieldError,
    InvalidFieldsError,
    NotFoundError,
)
from chronoverse.secrets import SecretError
from services.server.grpc.errors import status_of


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (InvalidFieldsError([FieldError("name", "too long")]), grpc.StatusCode.INVALID_ARGUMENT),
        (NotFoundError("workflow", "x"), grpc.StatusCode.NOT_FOUND),
        (ConflictError("email_taken", "taken"), grpc.StatusCode.ALREADY_EXISTS),
        (ConflictError("workflow_terminated", "over"), grpc.StatusCode.FAILED_PRECONDITION),
        (AuthenticationError(), grpc.StatusCode.UNAUTHENTICATED),
        (SecretError("no key"), grpc.StatusCode.FAILED_PRECONDITION),
        # Anything unexpected is INTERNAL (as HTTP's 500), never UNKNOWN, and says nothing of it.
        (RuntimeError("database password is hunter2"), grpc.StatusCode.INTERNAL),
        (KeyError("x"), grpc.StatusCode.INTERNAL),
    ],
)
def test_each_error_has_its_status(error: Exception, code: grpc.StatusCode) -> None:
    got, message, fields = status_of(error)
    assert got is code
    assert "hunter2" not in message
    assert (fields is not None) == isinstance(error, InvalidFieldsError)
