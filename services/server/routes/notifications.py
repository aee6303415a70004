"""/notifications and /users/me: what happened to your workflows, and how much of it you see."""

from typing import Annotated

from fastapi import APIRouter, Query

from services.server.http_errors import ERRORS
from services.server.routes.deps import Api, Auth
from services.server.schemas import (
    MAX_MARK_READ_IDS,
    MarkReadIn,
    MarkReadOut,
    NotificationPageOut,
    NotificationQuery,
    ProfileOut,
    ProfileUpdate,
)

router = APIRouter(tags=["notifications"], responses=ERRORS)


@router.get(
    "/notifications",
    response_model=NotificationPageOut,
    summary="Your notifications, newest first, as your notification_preference shows them.",
)
def list_notifications(
    who: Auth, api: Api, query: Annotated[NotificationQuery, Query()]
) -> NotificationPageOut:
    return api.notifications.list(who, query)


@router.post(
    "/notifications/read",
    response_model=MarkReadOut,
    summary=f"Mark notifications read: exactly one of `ids` (1 to {MAX_MARK_READ_IDS} of yours; "
    "others are ignored) and `all: true` (every unread one you are shown).",
)
def mark_read(body: MarkReadIn, who: Auth, api: Api) -> MarkReadOut:
    return api.notifications.mark_read(who, body)


@router.get("/users/me", response_model=ProfileOut, summary="Your account and preferences.")
def get_profile(who: Auth, api: Api) -> ProfileOut:
    return api.notifications.profile(who)


@router.patch("/users/me", response_model=ProfileOut, summary="Change your preferences.")
def update_profile(body: ProfileUpdate, who: Auth, api: Api) -> ProfileOut:
    return api.notifications.update_profile(who, body)
