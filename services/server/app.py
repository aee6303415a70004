"""The HTTP/JSON API application: routers, the size limit and error handling."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from chronoverse import __version__
from services.server.context import ServerContext
from services.server.http_errors import BodySizeLimit, install_error_handlers
from services.server.routes import auth, jobs, logs, operations, volumes, workflows


def create_app(context: ServerContext) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        context.open()
        yield

    app = FastAPI(
        title="Chronoverse",
        version=__version__,
        summary="Scheduled HEARTBEAT and CONTAINER workflows, their jobs and live logs.",
        lifespan=lifespan,
    )
    app.state.context = context
    app.add_middleware(BodySizeLimit, max_bytes=context.settings.max_request_bytes)
    install_error_handlers(app)
    for router in (
        operations.router,
        auth.router,
        workflows.router,
        jobs.router,
        logs.router,
        volumes.router,
    ):
        app.include_router(router)
    return app
