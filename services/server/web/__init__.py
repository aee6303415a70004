"""The web edge: the dashboard under /ui/ and the API docs page, over the application layer.

Pages render server-side (Jinja2) and use htmx and its SSE extension, vendored with their licences
under ``static/vendor/`` (see ``static/vendor/README.md``); no asset is loaded from anywhere else,
so the dashboard and ``/docs`` work on air-gapped installs. A page parses its input, calls the
application layer (:mod:`services.server.usecases`) as the JSON and gRPC edges do, and renders the
result; it never runs SQL or validation of its own. See docs/dashboard.md.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from services.server.web import account, docs
from services.server.web import jobs as job_pages
from services.server.web import notifications as notification_pages
from services.server.web import workflows as workflow_pages
from services.server.web.errors import install_error_pages
from services.server.web.headers import SecurityHeaders

STATIC_DIR = Path(__file__).with_name("static")


def install(app: FastAPI) -> None:
    """Mount the static assets and include the web routers (the API docs page, the dashboard)."""
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.include_router(docs.router)
    app.include_router(account.router)
    app.include_router(notification_pages.router)
    # After the API's handlers (app.py installs them first): /ui/ paths get pages, others JSON.
    install_error_pages(app)
    app.add_middleware(SecurityHeaders)
    app.include_router(job_pages.router)
    app.include_router(workflow_pages.router)
