"""A user's webhook endpoints and their deliveries: create (bounded per user), list, delete, and
each delivery with its attempts.

The signing secret is generated here and stored sealed (chronoverse.secrets.SecretBox, as workflow
secrets are); only :func:`create` ever returns it in plain. The deliveries are written by the
state flips (chronoverse.alerts) and sent by the execution worker's delivery loop.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Generic, TypeVar
from uuid import UUID

from chronoverse.egress import EgressPolicy, literal_refusal
from chronoverse.errors import ConflictError, FieldError, InvalidFieldsError, NotFoundError
from chronoverse.postgres import Conn
from chronoverse.secrets import SecretBox
from chronoverse.sql import Queries
from chronoverse.webhooks import DeliveryStatus, generate_secret
from services.server.store.pagination import decode_cursor, encode_cursor

QUERIES = Queries.load(Path(__file__).with_name("queries.sql"))

T = TypeVar("T")


@dataclass(frozen=True, kw_only=True)
class Webhook:
    id: UUID
    workflow_id: UUID | None
    url: str
    events: tuple[str, ...]
    created_at: datetime

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Webhook:
        return cls(
            id=row["id"],
            workflow_id=row["workflow_id"],
            url=row["url"],
            events=tuple(row["events"]),
            created_at=row["created_at"],
        )


@dataclass(frozen=True, kw_only=True)
class CreatedWebhook:
    webhook: Webhook
    secret: str  # plain: shown once


@dataclass(frozen=True, kw_only=True)
class Attempt:
    attempt: int
    attempted_at: datetime
    status_code: int | None
    duration_ms: int
    error: str | None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Attempt:
        return cls(
            attempt=row["attempt"],
            attempted_at=row["attempted_at"],
            status_code=row["status_code"],
            duration_ms=row["duration_ms"],
            error=row["error"],
        )


@dataclass(frozen=True, kw_only=True)
class Delivery:
    id: UUID
    event: str
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime
    created_at: datetime
    finished_at: datetime | None
    payload: dict[str, Any]
    attempt_log: tuple[Attempt, ...]

    @classmethod
    def from_row(cls, row: dict[str, Any], attempt_log: tuple[Attempt, ...]) -> Delivery:
        return cls(
            id=row["id"],
            event=row["event"],
            status=DeliveryStatus(row["status"]),
            attempts=row["attempts"],
            next_attempt_at=row["next_attempt_at"],
            created_at=row["created_at"],
            finished_at=row["finished_at"],
            payload=row["payload"],
            attempt_log=attempt_log,
        )


@dataclass(frozen=True, kw_only=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None


def create(
    conn: Conn,
    user_id: UUID,
    *,
    url: str,
    events: list[str],
    workflow_id: UUID | None,
    secrets: SecretBox,
    egress: EgressPolicy,
    limit: int,
) -> CreatedWebhook:
    """A new endpoint with a new secret; 422 for an address the egress policy always refuses,
    404 for a workflow that is not the caller's, 409 beyond ``limit`` endpoints."""
    if (reason := literal_refusal(egress, url)) is not None:
        raise InvalidFieldsError([FieldError("url", f"is blocked by the egress policy: {reason}")])
    if workflow_id is not None:
        owned = conn.execute(QUERIES.owned_workflow, {"id": workflow_id, "user_id": user_id})
        if owned.fetchone() is None:
            raise NotFoundError("workflow", str(workflow_id))
    conn.execute(QUERIES.lock_user_webhooks, {"user_id": user_id})
    count = conn.execute(QUERIES.count_webhooks, {"user_id": user_id}).fetchone()
    assert count is not None
    if count["n"] >= limit:
        raise ConflictError(
            "webhook_quota_exceeded",
            f"you have {count['n']} webhooks, the most allowed per user ({limit}); "
            "delete one first (DELETE /webhooks/{id})",
        )
    secret = generate_secret()
    row = conn.execute(
        QUERIES.insert_webhook,
        {
            "user_id": user_id,
            "workflow_id": workflow_id,
            "url": url,
            "events": list(events),
            "secret": secrets.seal(secret),
        },
    ).fetchone()
    assert row is not None
    return CreatedWebhook(webhook=Webhook.from_row(row), secret=secret)


def list_page(conn: Conn, user_id: UUID, *, limit: int, cursor: str | None) -> Page[Webhook]:
    after = decode_cursor(cursor) if cursor else None
    rows = conn.execute(
        QUERIES.list_webhooks,
        {
            "user_id": user_id,
            "after_created_at": after[0] if after else None,
            "after_id": after[1] if after else None,
            "limit": limit + 1,
        },
    ).fetchall()
    found = [Webhook.from_row(r) for r in rows[:limit]]
    last = found[-1] if len(rows) > limit else None
    return Page(items=found, next_cursor=encode_cursor(last.created_at, last.id) if last else None)


def delete(conn: Conn, user_id: UUID, webhook_id: UUID) -> None:
    """Delete an endpoint with its deliveries (pending ones are never sent)."""
    params = {"id": webhook_id, "user_id": user_id}
    if conn.execute(QUERIES.delete_webhook, params).fetchone() is None:
        raise NotFoundError("webhook", str(webhook_id))


def deliveries_page(
    conn: Conn, user_id: UUID, webhook_id: UUID, *, limit: int, cursor: str | None
) -> Page[Delivery]:
    """An endpoint's deliveries, newest first, each with its attempts, oldest first."""
    owned = conn.execute(QUERIES.owned_webhook, {"id": webhook_id, "user_id": user_id})
    if owned.fetchone() is None:
        raise NotFoundError("webhook", str(webhook_id))
    after = decode_cursor(cursor) if cursor else None
    rows = conn.execute(
        QUERIES.list_webhook_deliveries,
        {
            "webhook_id": webhook_id,
            "after_created_at": after[0] if after else None,
            "after_id": after[1] if after else None,
            "limit": limit + 1,
        },
    ).fetchall()
    more = len(rows) > limit
    rows = rows[:limit]
    attempts: dict[UUID, list[Attempt]] = defaultdict(list)
    if rows:
        for a in conn.execute(
            QUERIES.webhook_attempts_of, {"delivery_ids": [r["id"] for r in rows]}
        ).fetchall():
            attempts[a["delivery_id"]].append(Attempt.from_row(a))
    found = [Delivery.from_row(r, tuple(attempts[r["id"]])) for r in rows]
    last = found[-1] if more and found else None
    return Page(items=found, next_cursor=encode_cursor(last.created_at, last.id) if last else None)
