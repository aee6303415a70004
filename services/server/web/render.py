"""Rendering a page: the Jinja2 environment and what every template can use.

Every template gets, besides ``request``: ``csrf_token(request)`` and ``csrf_input(request)``
(the session's CSRF token, and the hidden form field that carries it), ``current_user(request)``
(the signed-in :class:`~chronoverse.accounts.Principal` or None), and the time formatters
``format_time(dt)`` (text that states its timezone, UTC) and ``time_tag(dt)`` (a ``<time>``
element the browser rewrites in the reader's own timezone, naming it).
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from markupsafe import Markup, escape

from chronoverse.accounts import Principal
from services.server.web.session import csrf_input, csrf_token, resolve_user

if TYPE_CHECKING:
    from fastapi.templating import Jinja2Templates


def current_user(request: Request) -> Principal | None:
    """The signed-in user of the request, or None (looked up once per request)."""
    return resolve_user(request, request.app.state.application)


def format_time(moment: datetime | None) -> str:
    """A time as text that states its timezone: ``2025-01-02 15:04:05 UTC`` ('—' for None)."""
    if moment is None:
        return "—"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def time_tag(moment: datetime | None) -> Markup:
    """A ``<time>`` element stating UTC; static/app.js shows it in the reader's timezone, named."""
    if moment is None:
        return Markup("—")
    iso = moment.astimezone(UTC).isoformat()
    return Markup(
        f'<time datetime="{escape(iso)}" data-local-time>{escape(format_time(moment))}</time>'
    )


@functools.cache
def templates() -> Jinja2Templates:
    """The environment, made at the first page rendered: Jinja2 and the templates cost about
    2 MiB resident, which a server that only answers the API never needs."""
    from fastapi.templating import Jinja2Templates

    made = Jinja2Templates(directory=Path(__file__).with_name("templates"))
    made.env.globals.update(
        csrf_token=csrf_token,
        csrf_input=csrf_input,
        current_user=current_user,
        format_time=format_time,
        time_tag=time_tag,
    )
    return made


def page(
    request: Request,
    template: str,
    context: dict[str, Any] | None = None,
    *,
    status_code: int = 200,
) -> HTMLResponse:
    """Render ``template`` with ``context``; every page also gets ``request``."""
    return templates().TemplateResponse(request, template, context or {}, status_code=status_code)
