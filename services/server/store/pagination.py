"""Keyset cursors: an opaque token for "the rows after this (created_at, id)", newest first."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from uuid import UUID

from chronoverse.errors import FieldError, InvalidFieldsError
from services.server.schemas import PAGE_CURSOR_PATTERN

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_CURSOR = re.compile(PAGE_CURSOR_PATTERN)


def encode_cursor(created_at: datetime, row_id: UUID) -> str:
    # Microseconds since the epoch (Postgres's resolution) and the id: every string of this
    # shape is a position, so the OpenAPI document can say exactly which cursors are valid.
    return f"{(created_at - _EPOCH) // timedelta(microseconds=1)}_{row_id.hex}"


def decode_cursor(cursor: str) -> tuple[datetime, UUID]:
    """The position a cursor names; InvalidFieldsError when it does not have a cursor's shape."""
    if not _CURSOR.fullmatch(cursor):
        raise InvalidFieldsError([FieldError("cursor", "is not a cursor this API returned")])
    micros, row_id = cursor.split("_")
    return _EPOCH + timedelta(microseconds=int(micros)), UUID(hex=row_id)
