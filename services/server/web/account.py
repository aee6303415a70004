"""The account pages: log in, sign up, sign out, and the profile (preference and API tokens).

Each form calls the accounts or notifications use case as ``/auth`` and ``/me`` do; a login from
here issues a token named ``web session``, kept in the session cookie (see
:mod:`services.server.web.session`), and signing out revokes it. Also the site's entry redirects:
``/`` to ``/ui/``, and ``/ui/`` to the workflows list.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import RedirectResponse, Response

from chronoverse.errors import (
    AuthenticationError,
    BusyError,
    ChronoverseError,
    ConflictError,
    ForbiddenError,
    InvalidFieldsError,
    RateLimitedError,
)
from services.server.routes.auth import client_address
from services.server.routes.deps import Api
from services.server.schemas import ApiTokenCreate, Credentials, ProfileUpdate, TokenOut
from services.server.usecases.accounts import WEB_SESSION
from services.server.web.forms import by_field, parse
from services.server.web.render import page
from services.server.web.session import (
    HOME,
    CsrfChecked,
    OptionalWebUser,
    SameOrigin,
    WebUser,
    clear_session_cookie,
    safe_next,
    set_session_cookie,
)

router = APIRouter(include_in_schema=False)

CREDENTIAL_HINTS = {"email": "must be an email address", "password": "must be 8 to 1024 characters"}
PREFERENCES = (
    ("ALERTS", "Alerts: failures, recoveries and terminations"),
    ("ALL", "All: every notification"),
    ("NONE", "None"),
)
Next = Annotated[str | None, Query(alias="next", max_length=2000)]
FormText = Annotated[str, Form()]
Saved = Annotated[Literal["preference", "revoked"] | None, Query()]


@router.get("/")
def root() -> RedirectResponse:
    return RedirectResponse("/ui/", status_code=307)


@router.get("/ui")
@router.get("/ui/")
def home() -> RedirectResponse:
    return RedirectResponse("/ui/workflows", status_code=307)


# --- log in, sign up, sign out ---------------------------------------------------------------


def _credentials_page(
    request: Request,
    template: str,
    *,
    email: str = "",
    next_url: str,
    error: ChronoverseError | None = None,
) -> Response:
    """The login or sign-up form, with the error of the last attempt at its field or on top."""
    context: dict[str, Any] = {"email": email, "next": next_url, "errors": {}, "message": None}
    status, headers = 200, {}
    if isinstance(error, InvalidFieldsError):
        status, context["errors"] = 422, by_field(error)
    elif isinstance(error, ConflictError):  # the email is taken
        status, context["errors"] = 409, {"email": error.message}
    elif isinstance(error, AuthenticationError):
        status, context["message"] = 401, error.message
    elif isinstance(error, ForbiddenError):  # registration closed
        status, context["message"] = 403, error.message
    elif isinstance(error, RateLimitedError | BusyError):
        status = 429 if isinstance(error, RateLimitedError) else 503
        seconds = error.retry_after_s
        context["message"] = (
            f"{error.message}. Try again in {seconds} second{'s' if seconds != 1 else ''}."
        )
        headers["Retry-After"] = str(seconds)
    response = page(request, template, context, status_code=status)
    response.headers.update(headers)
    return response


def _signed_in(request: Request, token: TokenOut, next_url: str) -> Response:
    response = RedirectResponse(safe_next(next_url), status_code=303)
    set_session_cookie(response, request, token.token, token.expires_at)
    return response


@router.get("/ui/login")
def login_form(request: Request, who: OptionalWebUser, next_url: Next = None) -> Response:
    if who is not None:
        return RedirectResponse(safe_next(next_url), status_code=303)
    return _credentials_page(request, "login.html", next_url=safe_next(next_url))


@router.post("/ui/login", dependencies=[SameOrigin])
def login(
    request: Request,
    api: Api,
    email: FormText = "",
    password: FormText = "",
    next_url: Annotated[str, Form(alias="next")] = HOME,
) -> Response:
    try:
        credentials = parse(
            Credentials, {"email": email, "password": password}, hints=CREDENTIAL_HINTS
        )
        token = api.accounts.login(
            credentials, client=client_address(request), token_name=WEB_SESSION
        )
    except (InvalidFieldsError, AuthenticationError, RateLimitedError, BusyError) as exc:
        return _credentials_page(
            request, "login.html", email=email, next_url=safe_next(next_url), error=exc
        )
    return _signed_in(request, token, next_url)


@router.get("/ui/signup")
def signup_form(request: Request, who: OptionalWebUser, next_url: Next = None) -> Response:
    if who is not None:
        return RedirectResponse(safe_next(next_url), status_code=303)
    return _credentials_page(request, "signup.html", next_url=safe_next(next_url))


@router.post("/ui/signup", dependencies=[SameOrigin])
def signup(
    request: Request,
    api: Api,
    email: FormText = "",
    password: FormText = "",
    next_url: Annotated[str, Form(alias="next")] = HOME,
) -> Response:
    client = client_address(request)
    try:
        credentials = parse(
            Credentials, {"email": email, "password": password}, hints=CREDENTIAL_HINTS
        )
        api.accounts.register(credentials, client=client)
        token = api.accounts.login(credentials, client=client, token_name=WEB_SESSION)
    except (
        InvalidFieldsError,
        ConflictError,
        ForbiddenError,
        AuthenticationError,
        RateLimitedError,
        BusyError,
    ) as exc:
        return _credentials_page(
            request, "signup.html", email=email, next_url=safe_next(next_url), error=exc
        )
    return _signed_in(request, token, next_url)


@router.post("/ui/logout", dependencies=[CsrfChecked])
def logout(request: Request, api: Api, who: OptionalWebUser) -> Response:
    """Revoke the session's token (so a copy of the cookie is worthless) and forget the cookie."""
    if who is not None:
        api.accounts.logout(who)
    response = RedirectResponse("/ui/login", status_code=303)
    clear_session_cookie(response, request)
    return response


# --- the profile -----------------------------------------------------------------------------


def _profile_page(
    request: Request,
    api: Api,
    who: WebUser,
    *,
    saved: str | None = None,
    new_token: TokenOut | None = None,
    token_name: str = "",
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    return page(
        request,
        "profile.html",
        {
            "profile": api.notifications.profile(who),
            "tokens": api.accounts.tokens(who),
            "session_id": who.token_id,
            "preferences": PREFERENCES,
            "saved": saved,
            "new_token": new_token,
            "token_name": token_name,
            "errors": errors or {},
        },
        status_code=status_code,
    )


@router.get("/ui/profile")
def profile(request: Request, api: Api, who: WebUser, saved: Saved = None) -> Response:
    return _profile_page(request, api, who, saved=saved)


@router.post("/ui/profile/preference", dependencies=[CsrfChecked])
def save_preference(
    request: Request, api: Api, who: WebUser, notification_preference: FormText = ""
) -> Response:
    try:
        update = parse(ProfileUpdate, {"notification_preference": notification_preference})
        api.notifications.update_profile(who, update)
    except InvalidFieldsError as exc:
        return _profile_page(request, api, who, errors=by_field(exc), status_code=422)
    return RedirectResponse("/ui/profile?saved=preference", status_code=303)


@router.post("/ui/profile/tokens", dependencies=[CsrfChecked])
def create_token(request: Request, api: Api, who: WebUser, name: FormText = "") -> Response:
    """A new API token, shown on this answer only (it is stored as a hash, never as itself)."""
    try:
        token = api.accounts.create_token(who, parse(ApiTokenCreate, {"name": name.strip()}))
    except InvalidFieldsError as exc:
        return _profile_page(
            request, api, who, errors=by_field(exc), token_name=name, status_code=422
        )
    response = _profile_page(request, api, who, new_token=token, status_code=201)
    response.headers["Cache-Control"] = "no-store"
    return response


@router.post("/ui/profile/tokens/{token_id}/revoke", dependencies=[CsrfChecked])
def revoke_token(api: Api, who: WebUser, token_id: UUID) -> Response:
    api.accounts.revoke_token(who, token_id)
    return RedirectResponse("/ui/profile?saved=revoked", status_code=303)
