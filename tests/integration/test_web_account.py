"""The dashboard's sessions and account pages over HTTP: sign up, log in and out, the cookie's
attributes, ``next``, CSRF, security headers, error pages, the profile and the notifications
drawer, against a real server."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator, Mapping
from http.cookies import SimpleCookie
from uuid import UUID

import httpx
import pytest

from services.server.context import ServerContext
from services.server.settings import Settings
from services.server.web.headers import CSP
from tests.integration.conftest import RunningServer, free_port, new_user
from tests.integration.test_auth_abuse import Served
from tests.integration.test_notifications import seed

pytestmark = pytest.mark.integration

PASSWORD = "correct horse"
COOKIE = "cv_session"


# --- helpers ------------------------------------------------------------------------------------


@pytest.fixture
def web(server: RunningServer) -> Iterator[httpx.Client]:
    """A client that keeps cookies, as a browser does, and does not follow redirects."""
    with httpx.Client(base_url=server.http_url, timeout=30, follow_redirects=False) as client:
        yield client


def fresh_email() -> str:
    return f"web-{uuid.uuid4().hex[:10]}@example.com"


def set_cookie(response: httpx.Response) -> SimpleCookie:
    cookie: SimpleCookie = SimpleCookie()
    for header in response.headers.get_list("set-cookie"):
        cookie.load(header)
    return cookie


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([0-9a-f]+)"', html)
    assert found, "no CSRF field on the page"
    return found.group(1)


def sign_up(client: httpx.Client, email: str | None = None, next_url: str = "/ui/") -> str:
    """Sign up through the form; the client then holds the session cookie. Return the email."""
    email = email or fresh_email()
    response = client.post(
        "/ui/signup", data={"email": email, "password": PASSWORD, "next": next_url}
    )
    assert response.status_code == 303, response.text
    assert COOKIE in client.cookies
    return email


def csrf(client: httpx.Client) -> str:
    page = client.get("/ui/profile")
    assert page.status_code == 200, page.text
    return csrf_of(page.text)


def field_error(html: str, field: str) -> str:
    found = re.search(rf'data-field-error="{field}">([^<]*)<', html)
    assert found, f"no error shown at {field}"
    return found.group(1)


# --- sign up, log in, log out -------------------------------------------------------------------


def test_signup_login_logout_round_trip(server: RunningServer, web: httpx.Client) -> None:
    form = web.get("/ui/signup")
    assert form.status_code == 200
    assert '<label for="email">Email</label>' in form.text
    assert '<label for="password">Password</label>' in form.text
    assert ">Sign up</button>" in form.text

    email = fresh_email()
    signed_up = web.post("/ui/signup", data={"email": email, "password": PASSWORD})
    assert signed_up.status_code == 303
    assert signed_up.headers["location"] == "/ui/"
    morsel = set_cookie(signed_up)[COOKIE]
    assert morsel.value.startswith("cv_")
    assert morsel["httponly"] is True
    assert morsel["samesite"].lower() == "lax"
    assert morsel["path"] == "/"
    assert not morsel["secure"]  # plain http on loopback; https sets Secure
    lifetime = server.settings.token_ttl_days * 86_400
    assert lifetime - 60 <= int(morsel["max-age"]) <= lifetime

    profile = web.get("/ui/profile")
    assert profile.status_code == 200
    assert email in profile.text
    assert "web session" in profile.text and "this session" in profile.text

    # Sign out, then log in again with the login form.
    web.post("/ui/logout", data={"csrf_token": csrf_of(profile.text)})
    assert COOKIE not in web.cookies
    form = web.get("/ui/login")
    assert ">Log in</button>" in form.text
    logged_in = web.post("/ui/login", data={"email": email, "password": PASSWORD})
    assert logged_in.status_code == 303
    assert set_cookie(logged_in)[COOKIE]["httponly"] is True
    assert web.get("/ui/profile").status_code == 200


def test_logout_revokes_the_session(server: RunningServer, web: httpx.Client) -> None:
    sign_up(web)
    session = web.cookies[COOKIE]
    token = csrf(web)

    refused = web.post("/ui/logout")  # no CSRF token
    assert refused.status_code == 403
    assert "text/html" in refused.headers["content-type"]
    assert web.get("/ui/profile").status_code == 200  # still signed in

    out = web.post("/ui/logout", data={"csrf_token": token})
    assert out.status_code == 303
    assert out.headers["location"] == "/ui/login"
    cleared = set_cookie(out)[COOKIE]
    assert cleared.value == "" and cleared["max-age"] == "0"

    # A copy of the old cookie is worthless: the token is revoked, not just forgotten.
    with httpx.Client(base_url=server.http_url, cookies={COOKIE: session}) as stale:
        again = stale.get("/ui/profile")
        assert again.status_code == 303
        assert again.headers["location"] == "/ui/login?next=/ui/profile"
    api = httpx.get(f"{server.http_url}/users/me", headers={"Authorization": f"Bearer {session}"})
    assert api.status_code == 401


def test_pages_need_a_session_and_return_to_where_they_were(web: httpx.Client) -> None:
    signed_out = web.get("/ui/profile?saved=preference")
    assert signed_out.status_code == 303
    assert signed_out.headers["location"] == "/ui/login?next=/ui/profile%3Fsaved%3Dpreference"
    # An htmx fragment is told where to go instead of getting the login page as its content.
    fragment = web.get("/ui/notifications", headers={"HX-Request": "true"})
    assert fragment.status_code == 204
    assert fragment.headers["HX-Redirect"] == "/ui/login?next=/ui/notifications"

    form = web.get("/ui/login", params={"next": "/ui/profile"})
    assert 'name="next" value="/ui/profile"' in form.text
    email = sign_up(web, next_url="/ui/profile")
    web.cookies.clear()
    back = web.post("/ui/login", data={"email": email, "password": PASSWORD, "next": "/ui/profile"})
    assert back.headers["location"] == "/ui/profile"


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/",
        "//evil.example/ui/",
        "/\\evil.example",
        "http:/evil.example",
        "ui/profile",
        "javascript:alert(1)",
    ],
)
def test_next_never_leaves_the_site(web: httpx.Client, target: str) -> None:
    email = sign_up(web)
    web.cookies.clear()
    response = web.post("/ui/login", data={"email": email, "password": PASSWORD, "next": target})
    assert response.status_code == 303
    assert response.headers["location"] == "/ui/"
    # Signed in, the login page sends on at once, to the same safe place.
    assert web.get("/ui/login", params={"next": target}).headers["location"] == "/ui/"


def test_login_errors_are_shown_at_their_field(web: httpx.Client) -> None:
    email = sign_up(web)
    web.cookies.clear()

    bad_shape = web.post("/ui/login", data={"email": "not-an-email", "password": "short"})
    assert bad_shape.status_code == 422
    assert field_error(bad_shape.text, "email") == "Email must be an email address"
    assert field_error(bad_shape.text, "password") == "Password must be 8 to 1024 characters"
    assert 'value="not-an-email"' in bad_shape.text  # what was typed is kept
    assert 'aria-invalid="true"' in bad_shape.text

    wrong = web.post("/ui/login", data={"email": email, "password": "wrong password"})
    assert wrong.status_code == 401
    assert 'role="alert"' in wrong.text and "wrong email or password" in wrong.text
    assert COOKIE not in web.cookies


def test_signup_errors_are_shown_at_their_field(web: httpx.Client) -> None:
    email = sign_up(web)
    web.cookies.clear()
    taken = web.post("/ui/signup", data={"email": email, "password": PASSWORD})
    assert taken.status_code == 409
    assert "is already registered" in field_error(taken.text, "email")

    short = web.post("/ui/signup", data={"email": fresh_email(), "password": "short"})
    assert short.status_code == 422
    assert field_error(short.text, "password") == "Password must be 8 to 1024 characters"


def test_too_many_logins_is_a_readable_429(web: httpx.Client) -> None:
    email = sign_up(web)
    web.cookies.clear()
    statuses = []
    for _ in range(15):
        response = web.post("/ui/login", data={"email": email, "password": "wrong password"})
        statuses.append(response.status_code)
        if response.status_code == 429:
            break
    assert statuses[-1] == 429, statuses
    assert int(response.headers["Retry-After"]) >= 1
    assert re.search(r"Try again in \d+ seconds?\.", response.text)
    assert 'role="alert"' in response.text


@pytest.fixture
def closed_server(environ: Mapping[str, str], database_url: str) -> Iterator[Served]:
    settings = Settings.from_environ(
        {
            **environ,
            "CHRONOVERSE_DATABASE_URL": database_url,
            "CHRONOVERSE_GRPC_HOST": "127.0.0.1",
            "CHRONOVERSE_GRPC_PORT": str(free_port()),
            "CHRONOVERSE_REGISTRATION": "closed",
        }
    )
    context = ServerContext(settings)
    context.open()
    served = Served(context)
    yield served
    served.stop()
    context.close()


def test_closed_registration_is_a_readable_403(closed_server: Served) -> None:
    with closed_server.client() as client:
        response = client.post("/ui/signup", data={"email": fresh_email(), "password": PASSWORD})
    assert response.status_code == 403
    assert 'role="alert"' in response.text
    assert "registration is closed" in response.text
    assert "chronoverse users create" in response.text


def test_a_form_from_another_site_is_refused(web: httpx.Client) -> None:
    email = sign_up(web)
    web.cookies.clear()
    forged = web.post(
        "/ui/login",
        data={"email": email, "password": PASSWORD},
        headers={"Origin": "https://evil.example"},
    )
    assert forged.status_code == 403
    assert COOKIE not in web.cookies


# --- CSRF, headers, the JSON API ----------------------------------------------------------------


def test_state_changing_forms_need_the_csrf_token(web: httpx.Client) -> None:
    sign_up(web)
    token = csrf(web)
    for data in ({"notification_preference": "ALL"}, {"csrf_token": "0" * 64}):
        refused = web.post("/ui/profile/preference", data=data)
        assert refused.status_code == 403
        assert "text/html" in refused.headers["content-type"]
        assert "reload the page" in refused.text
    assert 'value="ALERTS" selected' in web.get("/ui/profile").text

    by_header = web.post(
        "/ui/profile/preference",
        data={"notification_preference": "ALL"},
        headers={"X-CSRF-Token": token},
    )
    assert by_header.status_code == 303
    assert 'value="ALL" selected' in web.get("/ui/profile").text

    # The token belongs to the session: another user's does not pass.
    with httpx.Client(base_url=str(web.base_url), follow_redirects=False) as other:
        sign_up(other)
        crossed = other.post(
            "/ui/profile/preference", data={"notification_preference": "NONE", "csrf_token": token}
        )
        assert crossed.status_code == 403


def test_security_headers(web: httpx.Client) -> None:
    for path in ("/ui/login", "/ui/signup"):
        response = web.get(path)
        assert response.headers["Content-Security-Policy"] == CSP
        assert "frame-ancestors 'none'" in CSP and "'unsafe-inline'" not in CSP
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "same-origin"
    sign_up(web)
    for path in ("/ui/profile", "/ui/notifications", "/ui/no-such-page"):
        assert web.get(path).headers["Content-Security-Policy"] == CSP
    # /docs too: Swagger UI needs no inline script or style (tests/web/test_docs.py).
    assert web.get("/docs").headers["Content-Security-Policy"] == CSP
    assert web.get("/static/app.js").headers["X-Content-Type-Options"] == "nosniff"
    # The pages' script: no inline <script> body and no inline event handler on a page.
    page = web.get("/ui/profile").text
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page)
    assert not re.search(r"\son[a-z]+=", page)


def test_a_cookie_alone_never_authorizes_the_json_api(
    server: RunningServer, web: httpx.Client
) -> None:
    sign_up(web)
    token = csrf(web)
    write = web.post(
        "/workflows",
        json={"name": "cookie", "kind": "HEARTBEAT", "payload": {"endpoint": "http://127.0.0.1/"}},
        headers={"X-CSRF-Token": token},
    )
    assert write.status_code == 401
    assert write.json()["error"]["code"] == "unauthenticated"
    assert web.patch("/users/me", json={"notification_preference": "ALL"}).status_code == 401
    assert web.post("/auth/logout").status_code == 401
    assert web.get("/users/me").status_code == 401
    # The same token as a bearer token works: the cookie's value is not the problem, its place is.
    bearer = {"Authorization": f"Bearer {web.cookies[COOKIE]}"}
    with httpx.Client(base_url=server.http_url) as api:
        assert api.get("/users/me", headers=bearer).status_code == 200


# --- error pages --------------------------------------------------------------------------------


def test_error_pages_under_ui_and_json_elsewhere(web: httpx.Client, http: httpx.Client) -> None:
    sign_up(web)
    unknown = web.get("/ui/no-such-page")
    assert unknown.status_code == 404
    assert "text/html" in unknown.headers["content-type"]
    assert 'data-error-status="404"' in unknown.text

    missing = web.get(f"/ui/workflows/{uuid.uuid4()}")
    assert missing.status_code == 404
    assert "does not exist, or it is not yours" in missing.text

    bad_revoke = web.post(
        f"/ui/profile/tokens/{uuid.uuid4()}/revoke", data={"csrf_token": csrf(web)}
    )
    assert bad_revoke.status_code == 404
    assert 'data-error-status="404"' in bad_revoke.text

    bad_query = web.get("/ui/profile", params={"sort": "x"})
    assert bad_query.status_code == 422
    assert "text/html" in bad_query.headers["content-type"]

    _, auth = new_user(http)
    api = http.get(f"/workflows/{uuid.uuid4()}", headers=auth)
    assert api.status_code == 404
    assert api.json()["error"]["code"] == "not_found"
    assert http.get("/no-such-path").json()["error"]["code"] == "not_found"


def test_entry_redirects(web: httpx.Client) -> None:
    root = web.get("/")
    assert root.status_code == 307 and root.headers["location"] == "/ui/"
    home = web.get("/ui/")
    assert home.status_code == 307 and home.headers["location"] == "/ui/workflows"
    assert web.get("/ui").headers["location"] == "/ui/workflows"


# --- the profile --------------------------------------------------------------------------------


def test_profile_preference(server: RunningServer, web: httpx.Client) -> None:
    email = sign_up(web)
    page = web.get("/ui/profile")
    assert '<label for="notification_preference">Notification preference</label>' in page.text
    assert 'value="ALERTS" selected' in page.text
    token = csrf_of(page.text)

    saved = web.post(
        "/ui/profile/preference", data={"notification_preference": "NONE", "csrf_token": token}
    )
    assert saved.status_code == 303
    assert saved.headers["location"] == "/ui/profile?saved=preference"
    after = web.get(saved.headers["location"])
    assert 'value="NONE" selected' in after.text and "preference saved" in after.text

    # The same preference the JSON API reads: one use case under both.
    bearer = {"Authorization": f"Bearer {web.cookies[COOKIE]}"}
    me = httpx.get(f"{server.http_url}/users/me", headers=bearer).json()
    assert me == {**me, "email": email, "notification_preference": "NONE"}

    invalid = web.post(
        "/ui/profile/preference", data={"notification_preference": "SOME", "csrf_token": token}
    )
    assert invalid.status_code == 422
    assert field_error(invalid.text, "notification_preference").startswith(
        "Notification preference"
    )


def test_api_tokens_create_use_revoke(server: RunningServer, web: httpx.Client) -> None:
    sign_up(web)
    token = csrf(web)

    nameless = web.post("/ui/profile/tokens", data={"name": "  ", "csrf_token": token})
    assert nameless.status_code == 422
    assert field_error(nameless.text, "name").startswith("Token name")

    created = web.post("/ui/profile/tokens", data={"name": "ci", "csrf_token": token})
    assert created.status_code == 201
    assert created.headers["Cache-Control"] == "no-store"
    found = re.search(r'id="new-token"[^>]*value="(cv_[^"]+)"', created.text)
    assert found, "the new token is not shown"
    secret = found.group(1)
    # Shown once: the profile never shows it again.
    assert secret not in web.get("/ui/profile").text

    bearer = {"Authorization": f"Bearer {secret}"}
    with httpx.Client(base_url=server.http_url) as api:
        assert api.get("/users/me", headers=bearer).status_code == 200
        listed = web.get("/ui/profile").text
        [row] = re.findall(r'<tr data-token="([0-9a-f-]+)">\s*<td>ci\b', listed)
        last_used = re.search(rf'<tr data-token="{row}">.*?</tr>', listed, flags=re.DOTALL)
        assert last_used and last_used.group(0).count("<time") == 3  # created, used, expires

        # Another user cannot revoke it.
        with httpx.Client(base_url=server.http_url, follow_redirects=False) as other:
            sign_up(other)
            theirs = other.post(
                f"/ui/profile/tokens/{row}/revoke", data={"csrf_token": csrf(other)}
            )
            assert theirs.status_code == 404
        assert api.get("/users/me", headers=bearer).status_code == 200

        revoked = web.post(f"/ui/profile/tokens/{row}/revoke", data={"csrf_token": token})
        assert revoked.status_code == 303
        assert revoked.headers["location"] == "/ui/profile?saved=revoked"
        assert api.get("/users/me", headers=bearer).status_code == 401
        assert f'data-token="{row}"' not in web.get("/ui/profile").text
        again = web.post(f"/ui/profile/tokens/{row}/revoke", data={"csrf_token": token})
        assert again.status_code == 404


# --- the notifications drawer -------------------------------------------------------------------


def user_id(server: RunningServer, client: httpx.Client) -> UUID:
    bearer = {"Authorization": f"Bearer {client.cookies[COOKIE]}"}
    return UUID(httpx.get(f"{server.http_url}/users/me", headers=bearer).json()["id"])


def test_notifications_drawer_badge_and_mark_all_read(
    server: RunningServer, web: httpx.Client
) -> None:
    sign_up(web)
    htmx = {"HX-Request": "true"}
    empty = web.get("/ui/notifications/badge", headers=htmx)
    assert empty.status_code == 200 and "hidden" in empty.text
    assert "No notifications yet" in web.get("/ui/notifications", headers=htmx).text

    seed(server, user_id(server, web))  # five notifications the ALERTS preference shows
    badge = web.get("/ui/notifications/badge", headers=htmx)
    assert "5 unread" in badge.text and " hidden" not in badge.text.split(">")[0]
    drawer = web.get("/ui/notifications", headers=htmx)
    assert "<html" not in drawer.text  # a fragment for the drawer
    assert drawer.text.count('class="notification unread"') == 5
    assert re.search(r'<a href="/ui/workflows/[0-9a-f-]+(/jobs/[0-9a-f-]+)?">', drawer.text)
    assert ">Mark all read</button>" in drawer.text
    full = web.get("/ui/notifications")  # without htmx: a page of its own
    assert "<html" in full.text and full.text.count('class="notification unread"') == 5

    assert web.post("/ui/notifications/read", headers=htmx).status_code == 403
    marked = web.post("/ui/notifications/read", headers={**htmx, "X-CSRF-Token": csrf(web)})
    assert marked.status_code == 200
    assert marked.headers["HX-Trigger"] == "notifications-changed"
    assert marked.text.count('class="notification read"') == 5
    assert "0 unread" in web.get("/ui/notifications/badge", headers=htmx).text


def test_the_layout_shows_the_shell_to_a_signed_in_user(web: httpx.Client) -> None:
    signed_out = web.get("/ui/login").text
    assert 'href="/ui/profile"' not in signed_out
    assert "data-theme-toggle" in signed_out
    sign_up(web)
    page = web.get("/ui/profile").text
    assert '<a href="/ui/workflows">Workflows</a>' in page
    assert 'aria-controls="notifications-drawer"' in page
    assert 'hx-get="/ui/notifications/badge"' in page
    assert 'action="/ui/logout"' in page and ">Sign out</button>" in page
    assert "data-local-time" in page and " UTC</time>" in page


def test_the_cookie_is_secure_over_https(web: httpx.Client) -> None:
    # uvicorn takes the scheme from X-Forwarded-Proto when the proxy (here loopback) is trusted.
    https = {"X-Forwarded-Proto": "https"}
    response = web.post(
        "/ui/signup", data={"email": fresh_email(), "password": PASSWORD}, headers=https
    )
    assert response.status_code == 303
    assert set_cookie(response)[COOKIE]["secure"] is True
    # httpx, like a browser, sends no Secure cookie over plain http: send it as the proxy would.
    session = {**https, "Cookie": f"{COOKIE}={set_cookie(response)[COOKIE].value}"}
    token = csrf_of(web.get("/ui/profile", headers=session).text)
    out = web.post("/ui/logout", data={"csrf_token": token}, headers=session)
    assert out.status_code == 303
    assert set_cookie(out)[COOKIE]["secure"] is True
