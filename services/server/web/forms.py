"""Form input to the application layer's typed requests, with each error named by its field.

A page builds the same request model the JSON edge does (:mod:`services.server.schemas`); when
the model refuses the input, its errors become an :class:`InvalidFieldsError` like the ones the
use cases raise, so a template shows both kinds alike, next to their fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from chronoverse.errors import FieldError, InvalidFieldsError

M = TypeVar("M", bound=BaseModel)

_READABLE = {
    "missing": "is required",
    "string_too_short": "is too short",
    "string_too_long": "is too long",
    "string_pattern_mismatch": "is not in the expected format",
    "literal_error": "is not one of the choices",
}


def field_errors(
    exc: ValidationError, hints: Mapping[str, str] | None = None
) -> InvalidFieldsError:
    """The model's errors as named fields; ``hints`` gives a field's message in plain words."""
    errors = []
    for error in exc.errors():
        field = ".".join(str(part) for part in error.get("loc", ())) or "form"
        message = (hints or {}).get(field) or _READABLE.get(
            str(error.get("type")),
            str(error.get("msg", "is invalid")).removeprefix("Value error, "),
        )
        errors.append(FieldError(field, message))
    return InvalidFieldsError(errors)


def parse(model: type[M], data: Mapping[str, Any], *, hints: Mapping[str, str] | None = None) -> M:
    """``model`` built from form ``data``; InvalidFieldsError naming each refused field."""
    try:
        return model.model_validate(dict(data))
    except ValidationError as exc:
        raise field_errors(exc, hints) from exc


def by_field(exc: InvalidFieldsError) -> dict[str, str]:
    """The errors by field name, for a template to show next to each input (first one wins)."""
    found: dict[str, str] = {}
    for error in exc.errors:
        found.setdefault(error.field, error.message)
    return found
