"""/healthz, /readyz and /metrics."""

import asyncio

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from chronoverse.checks import postgres_check, redis_check
from chronoverse.health import run_checks
from services.server.routes.deps import Context

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Liveness: the process serves requests.")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness: Postgres and Redis answer.",
    responses={503: {"description": "A dependency is unavailable; `checks` names it."}},
)
async def readyz(context: Context) -> JSONResponse:
    checks = [postgres_check(context.settings), redis_check(context.settings)]
    ready, results = await asyncio.to_thread(run_checks, checks)
    return JSONResponse(
        {"status": "ready" if ready else "not_ready", "checks": results},
        status_code=200 if ready else 503,
    )


@router.get(
    "/metrics",
    summary="Prometheus metrics.",
    response_class=PlainTextResponse,
    responses={200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {}}}},
)
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
