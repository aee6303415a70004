"""Wire encoding of Kafka messages: versioned JSON objects with snake_case fields."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from chronoverse.errors import MalformedMessageError

MAX_MESSAGE_BYTES = 1_000_000
# Chronoverse's messages nest three levels at most. Deeper input is refused here rather than left
# to blow the interpreter's recursion limit further on (json itself, str(), pydantic).
MAX_NESTING = 32


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
    except RecursionError as exc:
        raise MalformedMessageError(f"JSON nested deeper than {MAX_NESTING} levels") from exc
    if not isinstance(decoded, dict):
        raise MalformedMessageError(f"expected a JSON object, got {type(decoded).__name__}")
    if nesting(decoded) > MAX_NESTING:
        raise MalformedMessageError(f"JSON nested deeper than {MAX_NESTING} levels")
    return decoded


def nesting(value: Any) -> int:
    """How deeply JSON arrays and objects nest in ``value`` (0 for a scalar); no recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        if depth > MAX_NESTING:
            break  # deep enough to refuse: no need to walk the rest
        stack.extend((child, depth + 1) for child in children)
    return deepest
