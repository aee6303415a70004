"""Wire encoding of Kafka messages: versioned JSON objects with snake_case fields."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from chronoverse.errors import MalformedMessageError

MAX_MESSAGE_BYTES = 1_000_000


def encode(value: Mapping[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":"), default=str).encode()


def decode_object(key: bytes | None, value: bytes | None) -> dict[str, Any]:
    """Decode a JSON object message; anything else is malformed."""
    if value is None:
        raise MalformedMessageError("empty message value")
    if len(value) > MAX_MESSAGE_BYTES:
        raise MalformedMessageError(f"message of {len(value)} bytes exceeds {MAX_MESSAGE_BYTES}")
    try:
        decoded = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedMessageError(f"not JSON: {exc}") from exc
    if not isinstance(decoded, dict):
        raise MalformedMessageError(f"expected a JSON object, got {type(decoded).__name__}")
    return decoded
