"""/docs: the API's Swagger UI, from vendored assets (FastAPI's own page loads them from a CDN)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from services.server.web.render import page

router = APIRouter(include_in_schema=False)


@router.get("/docs")
def api_docs(request: Request) -> HTMLResponse:
    return page(request, "docs.html")
