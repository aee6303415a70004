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
from datetime import UTC, datetime
from typing import Annotated
from urllib.parse import quote, urlsplit

from fastapi import Depends, Request, Response
from markupsafe import Markup, escape

from chronoverse.accounts import Principal
from chronoverse.errors import AuthenticationError, ChronoverseError
from services.server.routes.deps import Api
from services.server.usecases import Application

COOKIE = "cv_session"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"


def _csrf_key(request: Request) -> bytes:
    """The key that signs CSRF tokens: derived from the installation's first secret key, so every
    server process (replicas behind one address, a restarted one) accepts the others' forms,
    and it changes when that key is rotated out."""
    state = request.app.state
    key: bytes | None = getattr(state, "csrf_key", None)
    if key is None:
        first = state.application.context.settings.secret_key_list[0]
        key = state.csrf_key = hashlib.sha256(b"chronoverse csrf\0" + first.encode()).digest()
    return key


class LoginRequired(ChronoverseError):
    """A page needs a signed-in user; the web edge answers with a redirect to the login page."""

    def __init__(self, next_url: str) -> None:
        super().__init__("sign in to see this page")
        self.next_url = next_url


class CsrfRefused(ChronoverseError):
    """A state-changing request without the session's CSRF token (403)."""


def session_token(request: Request) -> str | None:
    return request.cookies.get(COOKIE) or None


def resolve_user(request: Request, application: Application) -> Principal | None:
    """Who the session cookie stands for, looked up once per request (pages and the layout
    ask alike); None without a cookie or with a session expired or revoked."""
    if hasattr(request.state, "web_user"):
        cached: Principal | None = request.state.web_user
        return cached
    token = session_token(request)
    who = None
    if token is not None:
        try:
            who = application.accounts.authenticate(f"Bearer {token}")
        except AuthenticationError:
            who = None
    request.state.web_user = who
    return who


def optional_user(request: Request, api: Api) -> Principal | None:
    """The signed-in user, or None (no cookie, or a session expired or revoked)."""
    return resolve_user(request, api)


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
    return hmac.new(_csrf_key(request), token.encode(), hashlib.sha256).hexdigest()


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


def check_same_origin(request: Request) -> None:
    """Refuse a form posted from another site where there is no session yet to bind a CSRF token
    to (login and sign-up): browsers send ``Origin`` with every POST."""
    origin = request.headers.get("origin")
    if origin is not None and origin != f"{request.url.scheme}://{request.url.netloc}":
        raise CsrfRefused("this form was not sent by this site")


SameOrigin = Depends(check_same_origin)


def login_url(next_url: str) -> str:
    return f"/ui/login?next={quote(next_url, safe='/')}"


HOME = "/ui/"


def safe_next(next_url: str | None) -> str:
    """Where to go after signing in: ``next`` when it is a path of this site, else the home page.

    Only a relative path is followed (``/ui/...``), never a URL with a scheme or host, nor a
    ``//host`` or ``/\\host`` path that browsers read as another site: an open redirect would
    let a link to our login page send users elsewhere once signed in.
    """
    if not next_url or not next_url.startswith("/") or next_url.startswith(("//", "/\\")):
        return HOME
    if any(ord(c) < 0x20 or c in "\\\x7f" for c in next_url):
        return HOME
    parts = urlsplit(next_url)
    if parts.scheme or parts.netloc:
        return HOME
    return next_url


def set_session_cookie(
    response: Response, request: Request, token: str, expires_at: datetime
) -> None:
    """Keep the session token in the browser: HttpOnly (no script reads it), SameSite=Lax (not
    sent on cross-site POSTs), Secure over https, and lasting as long as the token does."""
    max_age = max(0, int((expires_at - datetime.now(UTC)).total_seconds()))
    response.set_cookie(
        COOKIE,
        token,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )


def clear_session_cookie(response: Response, request: Request) -> None:
    response.delete_cookie(
        COOKIE, path="/", httponly=True, samesite="lax", secure=request.url.scheme == "https"
    )
