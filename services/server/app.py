"""The HTTP/JSON edge: routers over the application layer, the size limit and error handling."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

from chronoverse import __version__
from services.server import web
from services.server.context import ServerContext
from services.server.http_errors import BodySizeLimit, install_error_handlers
from services.server.routes import (
    analytics,
    auth,
    jobs,
    logs,
    notifications,
    operations,
    schedules,
    volumes,
    webhooks,
    workflows,
)
from services.server.routes.deps import known_query_parameters
from services.server.schemas import with_operator_limits
from services.server.usecases import Application


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
        dependencies=[Depends(known_query_parameters)],
        docs_url=None,  # served by the web edge from vendored assets, not from a CDN
    )
    # Every route is a thin adapter over the application layer, as every gRPC method is.
    app.state.application = Application(context)
    app.add_middleware(BodySizeLimit, max_bytes=context.settings.max_request_bytes)
    install_error_handlers(app)
    for router in (
        operations.router,
        auth.router,
        workflows.router,
        schedules.router,
        jobs.router,
        logs.router,
        volumes.router,
        notifications.router,
        analytics.router,
        webhooks.router,
    ):
        app.include_router(router)
    web.install(app)
    # The document states this server's CONTAINER bounds, which are the operator's settings.
    document = app.openapi
    app.openapi = lambda: with_operator_limits(document(), context.rules.containers)  # type: ignore[method-assign]
    return app
