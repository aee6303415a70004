"""Entry point: ``python -m services.server`` or ``chronoverse-server``."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator

import click
import uvicorn

from chronoverse import __version__
from chronoverse.checks import postgres_check, redis_check
from chronoverse.errors import ConfigurationError
from chronoverse.health import HealthServer
from chronoverse.logconfig import configure_logging
from services.server.app import create_app
from services.server.context import ServerContext
from services.server.grpc import create_grpc_server
from services.server.settings import Settings

logger = logging.getLogger(__name__)


class _HttpServer(uvicorn.Server):
    """uvicorn, minus its re-raising of SIGTERM after shutdown: main() still has gRPC to stop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        previous = {
            sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


@click.command(
    name="chronoverse-server",
    help="""Serve the Chronoverse HTTP/JSON API (with /healthz, /readyz and /openapi.json)
    and the gRPC API.

    Configured by CHRONOVERSE_* environment variables (see docs/configuration.md): HTTP on
    CHRONOVERSE_HTTP_PORT (default 8080), gRPC on CHRONOVERSE_GRPC_PORT (default 50051), and
    /healthz, /readyz with each dependency's check, and /metrics on CHRONOVERSE_HEALTH_PORT
    (default 9100).
    On SIGTERM it stops accepting work and lets requests in flight finish.""",
)
@click.version_option(__version__)
def main() -> None:
    try:
        settings = Settings.from_environ()
    except ConfigurationError as exc:
        raise click.UsageError(str(exc)) from exc
    configure_logging(settings.log_level, settings.log_format, service="server")
    context = ServerContext(settings)
    context.open()
    grpc_server, health_servicer, grpc_port = create_grpc_server(context)
    grpc_server.start()
    # /healthz, the detailed /readyz and /metrics, off the public port (compose does not
    # publish it).
    stopping = threading.Event()
    health = HealthServer(
        settings.health_host,
        settings.health_port,
        checks=[postgres_check(settings), redis_check(settings)],
        live=lambda: not stopping.is_set(),
    )
    health.start()
    config = uvicorn.Config(
        create_app(context),
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,
        timeout_graceful_shutdown=int(settings.shutdown_grace_s),
    )
    logger.info(
        "server started; HTTP on %s:%d, gRPC on port %d",
        settings.http_host,
        settings.http_port,
        grpc_port,
        extra={
            "action": "service_start",
            "service": "server",
            "http_port": settings.http_port,
            "grpc_port": grpc_port,
        },
    )
    try:
        # Returns after SIGTERM/SIGINT, once in-flight requests are done.
        _HttpServer(config).run()
    finally:
        stopping.set()
        health_servicer.enter_graceful_shutdown()
        grpc_server.stop(settings.shutdown_grace_s).wait()
        context.close()
        health.stop()
        logger.info("server stopped", extra={"action": "service_stop", "service": "server"})


if __name__ == "__main__":
    main()
