"""The notifications drawer: the unread badge of the top bar, the recent list, "Mark all read".

The layout loads the badge when a page loads, when the drawer opens or is marked read, and
every 60 s (no faster: it is a counter, not a live view). The drawer's list is an htmx
fragment; the same URL without htmx is a page of its own, so the drawer works without script.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from services.server.routes.deps import Api
from services.server.schemas import MarkReadIn, NotificationQuery
from services.server.web.render import page
from services.server.web.session import CsrfChecked, WebUser

router = APIRouter(prefix="/ui/notifications", include_in_schema=False)

RECENT = 20  # notifications the drawer lists
BADGE_CAP = 99  # the badge says "99+" beyond this


def _is_htmx(request: Request) -> bool:
    return request.headers.get("HX-Request") == "true"


def _drawer(request: Request, api: Api, who: WebUser) -> Response:
    listed = api.notifications.list(who, NotificationQuery(limit=RECENT))
    template = "notifications/_drawer.html" if _is_htmx(request) else "notifications/page.html"
    return page(request, template, {"notifications": listed.notifications})


@router.get("")
def drawer(request: Request, api: Api, who: WebUser) -> Response:
    return _drawer(request, api, who)


@router.get("/badge")
def badge(request: Request, api: Api, who: WebUser) -> Response:
    unread = api.notifications.list(who, NotificationQuery(unread=True, limit=BADGE_CAP))
    count = len(unread.notifications)
    label = f"{count}+" if unread.next_cursor else str(count)
    return page(request, "notifications/_badge.html", {"count": count, "label": label})


@router.post("/read", dependencies=[CsrfChecked])
def mark_all_read(request: Request, api: Api, who: WebUser) -> Response:
    api.notifications.mark_read(who, MarkReadIn(all=True))
    if not _is_htmx(request):
        return RedirectResponse("/ui/notifications", status_code=303)
    response = _drawer(request, api, who)
    response.headers["HX-Trigger"] = "notifications-changed"  # the badge refreshes
    return response
