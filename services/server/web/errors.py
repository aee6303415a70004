"""Error pages of the web edge: what a page's errors look like in a browser.

The JSON API's handlers (:mod:`services.server.http_errors`) stay in charge of every other path.
Under ``/ui/``, the same errors become HTML: a signed-out visitor is sent to the login page (htmx
requests are told to go there with ``HX-Redirect``), a refused CSRF token is a 403 page, and
every error the API would answer (a 404 for a workflow that is not the user's, a 422 for a bad
query parameter, a 500) is the error page with that status and message.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response

from services.server.web.render import page
from services.server.web.session import CsrfRefused, LoginRequired, login_url

Handler = Callable[[Request, Any], Awaitable[Response] | Response]

TITLES = {
    400: "Bad request",
    401: "Sign in required",
    403: "Forbidden",
    404: "Not found",
    405: "Not allowed",
    409: "Conflict",
    413: "Too large",
    422: "Invalid request",
    429: "Too many requests",
    500: "Something went wrong",
    503: "Busy",
}


def is_web_path(path: str) -> bool:
    return path == "/ui" or path.startswith("/ui/")


def error_page(request: Request, status: int, message: str) -> Response:
    if status == 404:
        message = "This page does not exist, or it is not yours."
    return page(
        request,
        "error.html",
        {"status": status, "title": TITLES.get(status, "Error"), "message": message},
        status_code=status,
    )


async def login_required(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LoginRequired)
    target = login_url(exc.next_url)
    if request.headers.get("HX-Request"):
        # htmx would follow a 303 and swap the login page into a fragment's place.
        return Response(status_code=204, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)


async def csrf_refused(request: Request, exc: Exception) -> Response:
    return error_page(request, 403, str(exc))


def as_page(api_handler: Handler) -> Handler:
    """The API's handler for an error, answering with the error page under /ui/."""

    async def handle(request: Request, exc: Any) -> Response:
        result = api_handler(request, exc)
        response = await result if inspect.isawaitable(result) else result
        if not is_web_path(request.url.path):
            return response
        try:
            message = str(json.loads(bytes(response.body))["error"]["message"])
        except (ValueError, KeyError, TypeError):
            message = ""
        html = error_page(request, response.status_code, message)
        for name in ("Retry-After", "Allow"):
            if name in response.headers:
                html.headers[name] = response.headers[name]
        return html

    return handle


def install_error_pages(app: FastAPI) -> None:
    """Wrap the API's handlers (installed first) so /ui/ paths get pages; add the web's own."""
    for exc_class, api_handler in list(app.exception_handlers.items()):
        app.add_exception_handler(exc_class, as_page(api_handler))
    app.add_exception_handler(LoginRequired, login_required)
    app.add_exception_handler(CsrfRefused, csrf_refused)
