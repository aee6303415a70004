"""Keyset cursors: an opaque token for "the rows after this (created_at, id)", newest first."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from uuid import UUID

from chronoverse.errors import FieldError, InvalidFieldsError


def encode_cursor(created_at: datetime, row_id: UUID) -> str:
    raw = json.dumps([created_at.isoformat(), str(row_id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, UUID]:
    """The position a cursor names; InvalidFieldsError on anything this API did not return."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, row_id = json.loads(raw)
        parsed = datetime.fromisoformat(created_at)
        if parsed.tzinfo is None:
            raise ValueError("naive timestamp")
        return parsed, UUID(row_id)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError) as exc:
        raise InvalidFieldsError(
            [FieldError("cursor", "is not a cursor this API returned")]
        ) from exc
