"""The HTTP application: routes and their wiring."""

from __future__ import annotations

import asyncio

from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from chronoverse import __version__
from chronoverse.checks import postgres_check, redis_check
from chronoverse.health import run_checks
from services.server.settings import Settings


def create_app(settings: Settings) -> FastAPI:
    app = FastAPI(
        title="Chronoverse",
        version=__version__,
        summary="Scheduled HEARTBEAT and CONTAINER workflows, their jobs and live logs.",
    )
    checks = [postgres_check(settings), redis_check(settings)]

    @app.get("/healthz", tags=["operations"], summary="Liveness: the process serves requests.")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["operations"],
        summary="Readiness: Postgres and Redis answer.",
        responses={503: {"description": "A dependency is unavailable; `checks` names it."}},
    )
    async def readyz() -> JSONResponse:
        ready, results = await asyncio.to_thread(run_checks, checks)
        return JSONResponse(
            {"status": "ready" if ready else "not_ready", "checks": results},
            status_code=200 if ready else 503,
        )

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics.")
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app
