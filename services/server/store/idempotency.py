"""Idempotency-Key for POST requests.

The key is claimed in the same transaction as the operation: a concurrent duplicate waits on the
primary key until the first commits, then replays its stored response. The same key with a
different request is a conflict. A failed operation rolls the claim back, so a retry runs again.
Keys expire after ``CHRONOVERSE_IDEMPOTENCY_KEY_TTL_S`` (default 24 hours).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

from psycopg.types.json import Jsonb

from chronoverse.errors import ConflictError, FieldError, InvalidFieldsError
from chronoverse.postgres import Conn
from chronoverse.sql import Queries
from services.server.schemas import IDEMPOTENCY_KEY_PATTERN

QUERIES = Queries.load(Path(__file__).with_name("queries.sql"))
HEADER = "Idempotency-Key"
_KEY = re.compile(IDEMPOTENCY_KEY_PATTERN)


@dataclass(frozen=True, kw_only=True)
class Outcome:
    status_code: int
    body: Any
    replayed: bool


def fingerprint(method: str, path: str, canonical_body: str) -> bytes:
    return hashlib.sha256(f"{method}\n{path}\n{canonical_body}".encode()).digest()


def validate_key(key: str) -> str:
    if not _KEY.fullmatch(key):
        raise InvalidFieldsError(
            [FieldError(HEADER, "must be 1 to 255 printable ASCII characters without spaces")]
        )
    return key


def run(
    conn: Conn,
    *,
    user_id: UUID,
    key: str | None,
    request_fingerprint: bytes,
    ttl_s: int,
    operation: Callable[[Conn], tuple[int, Any]],
) -> Outcome:
    """Run ``operation`` once per key; replay its stored response for a repeated key."""
    if key is None:
        status_code, body = operation(conn)
        return Outcome(status_code=status_code, body=body, replayed=False)
    params = {"user_id": user_id, "key": validate_key(key)}
    conn.execute(QUERIES.delete_expired_idempotency_key, params)
    claimed = conn.execute(
        QUERIES.claim_idempotency_key,
        {**params, "fingerprint": request_fingerprint, "ttl_s": ttl_s},
    ).fetchone()
    if claimed is None:
        stored = conn.execute(QUERIES.get_idempotency_key, params).fetchone()
        assert stored is not None  # the conflicting row is committed and we hold no lock on it
        if bytes(stored["fingerprint"]) != request_fingerprint:
            raise ConflictError(
                "idempotency_key_reused",
                f"{HEADER} {key!r} was already used with a different request",
            )
        return Outcome(
            status_code=stored["status_code"], body=stored["response_body"], replayed=True
        )
    status_code, body = operation(conn)
    conn.execute(
        QUERIES.store_idempotent_response,
        {**params, "status_code": status_code, "response_body": Jsonb(body)},
    )
    return Outcome(status_code=status_code, body=body, replayed=False)
