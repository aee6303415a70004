"""A user's notifications and profile: list them as the preference shows them, mark them read.

Notifications are written by whatever changed (chronoverse/alerts.py), in its own transaction;
here they are only read and marked. Every notification is stored; the user's preference decides,
when listing and marking, which of them they are shown.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, LiteralString
from uuid import UUID

from chronoverse.alerts import EntityType, Event, Kind, Preference
from chronoverse.errors import NotFoundError
from chronoverse.postgres import Conn
from chronoverse.sql import Queries
from services.server.schemas import DEFAULT_PAGE_SIZE
from services.server.store.pagination import decode_cursor, encode_cursor

QUERIES = Queries.load(Path(__file__).with_name("queries.sql"))


@dataclass(frozen=True, kw_only=True)
class Notification:
    id: UUID
    kind: Kind
    event: Event
    title: str
    message: str
    entity_type: EntityType
    entity_id: UUID
    action_url: str | None
    read_at: datetime | None
    created_at: datetime

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Notification:
        return cls(
            id=row["id"],
            kind=Kind(row["kind"]),
            event=Event(row["event"]),
            title=row["title"],
            message=row["message"],
            entity_type=EntityType(row["entity_type"]),
            entity_id=row["entity_id"],
            action_url=row["action_url"],
            read_at=row["read_at"],
            created_at=row["created_at"],
        )


@dataclass(frozen=True, kw_only=True)
class Profile:
    id: UUID
    email: str
    created_at: datetime
    notification_preference: Preference

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Profile:
        return cls(
            id=row["id"],
            email=row["email"],
            created_at=row["created_at"],
            notification_preference=Preference(row["notification_preference"]),
        )


@dataclass(frozen=True, kw_only=True)
class NotificationFilter:
    unread: bool = False
    limit: int = DEFAULT_PAGE_SIZE
    cursor: str | None = None


@dataclass(frozen=True, kw_only=True)
class NotificationPage:
    notifications: list[Notification]
    next_cursor: str | None


def get_profile(conn: Conn, user_id: UUID) -> Profile:
    row = conn.execute(QUERIES.get_profile, {"user_id": user_id}).fetchone()
    if row is None:  # deleted while its token was in use
        raise NotFoundError("user", str(user_id))
    return Profile.from_row(row)


def set_preference(conn: Conn, user_id: UUID, preference: Preference) -> Profile:
    row = conn.execute(
        QUERIES.set_notification_preference,
        {"user_id": user_id, "preference": preference.value},
    ).fetchone()
    if row is None:
        raise NotFoundError("user", str(user_id))
    return Profile.from_row(row)


def list_query(preference: Preference, *, unread: bool) -> LiteralString:
    """The list query for what ``preference`` shows: one per case, each planned on its index."""
    if preference is Preference.ALL:
        return QUERIES.list_unread_notifications if unread else QUERIES.list_notifications
    return QUERIES.list_unread_alert_notifications if unread else QUERIES.list_alert_notifications


def list_page(
    conn: Conn, user_id: UUID, preference: Preference, query: NotificationFilter
) -> NotificationPage:
    """The user's notifications that ``preference`` shows, newest first."""
    after = decode_cursor(query.cursor) if query.cursor else None
    if preference is Preference.NONE:
        return NotificationPage(notifications=[], next_cursor=None)
    rows = conn.execute(
        list_query(preference, unread=query.unread),
        {
            "user_id": user_id,
            "after_created_at": after[0] if after else None,
            "after_id": after[1] if after else None,
            "limit": query.limit + 1,
        },
    ).fetchall()
    notifications = [Notification.from_row(row) for row in rows[: query.limit]]
    more = len(rows) > query.limit
    last = notifications[-1] if notifications else None
    return NotificationPage(
        notifications=notifications,
        next_cursor=encode_cursor(last.created_at, last.id) if more and last else None,
    )


def mark_read(conn: Conn, user_id: UUID, preference: Preference, *, ids: list[UUID] | None) -> int:
    """Mark these of the user's unread notifications read (``ids`` None: every one it is shown);
    return how many. Ids of other users' notifications, or of hidden ones, match nothing."""
    if preference is Preference.NONE:
        return 0
    mark = (
        QUERIES.mark_notifications_read
        if preference is Preference.ALL
        else QUERIES.mark_alert_notifications_read
    )
    return conn.execute(mark, {"user_id": user_id, "all": ids is None, "ids": ids or []}).rowcount
