"""/healthz, /readyz and /metrics."""

import asyncio

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from chronoverse.checks import postgres_check, redis_check
from chronoverse.errors import NotFoundError
from chronoverse.health import run_checks
from services.server.routes.deps import Context

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Liveness: the process serves requests.")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness: Postgres and Redis answer.",
    description=(
        '`{"status": "ready"}`, or 503 with `not_ready`. Which dependency failed is '
        "named (`checks`) on the health port (CHRONOVERSE_HEALTH_PORT), and here only with "
        "CHRONOVERSE_PUBLIC_METRICS."
    ),
    responses={503: {"description": "A dependency is unavailable."}},
)
async def readyz(context: Context) -> JSONResponse:
    checks = [postgres_check(context.settings), redis_check(context.settings)]
    ready, results = await asyncio.to_thread(run_checks, checks)
    body: dict[str, object] = {"status": "ready" if ready else "not_ready"}
    if context.settings.public_metrics:
        body["checks"] = results
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get(
    "/metrics",
    summary="Prometheus metrics (only with CHRONOVERSE_PUBLIC_METRICS; else on the health port).",
    response_class=PlainTextResponse,
    responses={
        200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {}}},
        404: {"description": "Not served on the public port: see CHRONOVERSE_HEALTH_PORT."},
    },
)
async def metrics(context: Context) -> Response:
    if not context.settings.public_metrics:
        raise NotFoundError("route", "/metrics (it is served on the health port)")
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
