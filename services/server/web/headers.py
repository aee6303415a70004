"""Security headers on every response: a strict Content-Security-Policy on pages, and nosniff.

The policy allows scripts, styles and connections from this origin only, so no inline script or
event handler runs (an injected one included), and no site may frame a page. It holds for
``/docs`` too: Swagger UI 5 styles its elements through the DOM, which the policy allows, not
through inline ``style`` attributes or ``<style>`` elements (tests/browser/test_docs.py fails on
any console error, a CSP report included).
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


class SecurityHeaders:
    """Add the headers to each HTTP response as it starts (a pure ASGI middleware: it does not
    buffer, so the live log stream flows through it untouched)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                if headers.get("content-type", "").startswith("text/html"):
                    headers.setdefault("Content-Security-Policy", CSP)
                    headers.setdefault("Referrer-Policy", "same-origin")
                    headers.setdefault("X-Frame-Options", "DENY")
            await send(message)

        await self.app(scope, receive, send_with_headers)
