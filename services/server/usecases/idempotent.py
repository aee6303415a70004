"""The idempotent-POST runner: one operation per Idempotency-Key, committed with its response."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from chronoverse.accounts import Principal
from chronoverse.postgres import Conn
from services.server.context import ServerContext
from services.server.store import idempotency


@dataclass(frozen=True, kw_only=True)
class Replayable:
    """A POST's answer: its status and JSON body, and whether it is a stored one replayed."""

    status_code: int
    body: dict[str, Any]
    replayed: bool


def run_once(
    context: ServerContext,
    who: Principal,
    key: str | None,
    *,
    method: str,
    path: str,
    canonical_body: str,
    operation: Callable[[Conn], tuple[int, dict[str, Any]]],
) -> Replayable:
    """Run ``operation`` in one transaction with the key's claim and stored response.

    The fingerprint is the method, the path and the canonical body, so the same key with another
    request is a conflict on every edge alike.
    """
    with context.transaction() as conn:
        outcome = idempotency.run(
            conn,
            user_id=who.user_id,
            key=key,
            request_fingerprint=idempotency.fingerprint(method, path, canonical_body),
            ttl_s=context.settings.idempotency_key_ttl_s,
            operation=operation,
        )
    return Replayable(status_code=outcome.status_code, body=outcome.body, replayed=outcome.replayed)
