"""Browser sessions: a cookie that holds a session token, CSRF tokens, and what a page's caller is.

A session is an API token issued at login under the name ``web session`` (so logout revokes it,
and it expires like any token), kept in an ``HttpOnly``, ``SameSite=Lax`` cookie, ``Secure`` when
the page is served over https. EventSource cannot send an Authorization header, so the
dashboard's live log stream is read with this cookie, on a route of the web edge; the JSON API
keeps bearer tokens, and a cookie alone never authorizes it.

Every state-changing form or htmx request carries a CSRF token: an HMAC of the session token under
a key of this process, sent as the ``csrf_token`` form field or the ``X-CSRF-Token`` header.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, Request
from markupsafe import Markup, escape

from chronoverse.accounts import Principal
from chronoverse.errors import AuthenticationError, ChronoverseError
from services.server.routes.deps import Api

COOKIE = "cv_session"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
# Signs CSRF tokens. Per process: a server restart asks open forms to be reloaded.
_CSRF_KEY = secrets.token_bytes(32)


class LoginRequired(ChronoverseError):
    """A page needs a signed-in user; the web edge answers with a redirect to the login page."""

    def __init__(self, next_url: str) -> None:
        super().__init__("sign in to see this page")
        self.next_url = next_url


class CsrfRefused(ChronoverseError):
    """A state-changing request without the session's CSRF token (403)."""


def session_token(request: Request) -> str | None:
    return request.cookies.get(COOKIE) or None


def optional_user(request: Request, api: Api) -> Principal | None:
    """The signed-in user, or None (no cookie, or a session expired or revoked)."""
    token = session_token(request)
    if token is None:
        return None
    try:
        return api.accounts.authenticate(f"Bearer {token}")
    except AuthenticationError:
        return None


def required_user(request: Request, api: Api) -> Principal:
    """The signed-in user; LoginRequired (a redirect to the login page) when there is none."""
    who = optional_user(request, api)
    if who is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise LoginRequired(target)
    return who


OptionalWebUser = Annotated[Principal | None, Depends(optional_user)]
WebUser = Annotated[Principal, Depends(required_user)]


def csrf_token(request: Request) -> str:
    """The CSRF token of the request's session ('' without one)."""
    token = session_token(request)
    if token is None:
        return ""
    return hmac.new(_CSRF_KEY, token.encode(), hashlib.sha256).hexdigest()


def csrf_input(request: Request) -> Markup:
    """The hidden form field that carries the CSRF token."""
    return Markup(
        f'<input type="hidden" name="{CSRF_FIELD}" value="{escape(csrf_token(request))}">'
    )


async def check_csrf(request: Request) -> None:
    """Refuse a state-changing request whose CSRF token is missing or not the session's."""
    sent = request.headers.get(CSRF_HEADER)
    if sent is None:
        form = await request.form()
        value = form.get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    expected = csrf_token(request)
    if not sent or not expected or not hmac.compare_digest(sent, expected):
        raise CsrfRefused("this form has expired or was not sent by this site; reload the page")


CsrfChecked = Depends(check_csrf)


def login_url(next_url: str) -> str:
    return f"/ui/login?next={quote(next_url, safe='/')}"
