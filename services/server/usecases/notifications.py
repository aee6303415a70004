"""Notification use cases: list them, mark them read; the caller's profile and preference."""

from __future__ import annotations

from chronoverse.accounts import Principal
from chronoverse.alerts import Preference
from chronoverse.errors import FieldError, InvalidFieldsError
from services.server.context import ServerContext
from services.server.schemas import (
    MarkReadIn,
    MarkReadOut,
    NotificationOut,
    NotificationPageOut,
    NotificationQuery,
    ProfileOut,
    ProfileUpdate,
)
from services.server.store import notifications
from services.server.store.notifications import Notification, Profile


class NotificationCases:
    def __init__(self, context: ServerContext) -> None:
        self._context = context

    def list(self, who: Principal, query: NotificationQuery) -> NotificationPageOut:
        page_filter = notifications.NotificationFilter(
            unread=query.unread, limit=query.limit, cursor=query.cursor
        )
        with self._context.transaction() as conn:
            profile = notifications.get_profile(conn, who.user_id)
            page = notifications.list_page(
                conn, who.user_id, profile.notification_preference, page_filter
            )
        return NotificationPageOut(
            notifications=[_out(n) for n in page.notifications], next_cursor=page.next_cursor
        )

    def mark_read(self, who: Principal, request: MarkReadIn) -> MarkReadOut:
        """Exactly one of ``ids`` and ``all``; ids that are not the caller's are ignored."""
        if request.ids is None and request.all is None:
            raise InvalidFieldsError([FieldError("ids", "give ids, or all: true")])
        if request.ids is not None and request.all is not None:
            raise InvalidFieldsError([FieldError("all", "give either ids or all, not both")])
        with self._context.transaction() as conn:
            profile = notifications.get_profile(conn, who.user_id)
            marked = notifications.mark_read(
                conn,
                who.user_id,
                profile.notification_preference,
                ids=list(request.ids) if request.ids is not None else None,
            )
        return MarkReadOut(marked=marked)

    def profile(self, who: Principal) -> ProfileOut:
        with self._context.transaction() as conn:
            return _profile_out(notifications.get_profile(conn, who.user_id))

    def update_profile(self, who: Principal, request: ProfileUpdate) -> ProfileOut:
        preference = Preference(request.notification_preference)
        with self._context.transaction() as conn:
            return _profile_out(notifications.set_preference(conn, who.user_id, preference))


def _out(n: Notification) -> NotificationOut:
    return NotificationOut(
        id=n.id,
        kind=n.kind,
        title=n.title,
        message=n.message,
        entity_type=n.entity_type,
        entity_id=n.entity_id,
        action_url=n.action_url,
        read_at=n.read_at,
        created_at=n.created_at,
    )


def _profile_out(p: Profile) -> ProfileOut:
    return ProfileOut(
        id=p.id,
        email=p.email,
        created_at=p.created_at,
        notification_preference=p.notification_preference.value,
    )
