"""Running a worker process: logging, signals, the health listener, and a clean exit."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Protocol, TypeVar

import click

from chronoverse import __version__
from chronoverse.errors import ConfigurationError
from chronoverse.health import Check, HealthServer
from chronoverse.logconfig import configure_logging
from chronoverse.settings import HealthSettings

logger = logging.getLogger(__name__)

S = TypeVar("S", bound=HealthSettings)


def install_stop_handlers(stop: threading.Event) -> None:
    """SIGTERM and SIGINT ask the main loop to finish its current work and return."""

    def handle(signum: int, frame: FrameType | None) -> None:
        logger.info(
            "received %s, stopping", signal.Signals(signum).name, extra={"action": "stop_requested"}
        )
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)


def run_worker(
    name: str,
    settings: HealthSettings,
    body: Callable[[threading.Event], None],
    checks: Sequence[Check],
) -> None:
    """Run ``body(stop)`` until a signal sets ``stop``; serve health and metrics meanwhile."""
    configure_logging(settings.log_level, settings.log_format, service=name)
    stop = threading.Event()
    install_stop_handlers(stop)
    health = HealthServer(
        settings.health_host, settings.health_port, checks=checks, live=lambda: not stop.is_set()
    )
    health.start()
    logger.info(
        "%s started; health on port %d",
        name,
        health.port,
        extra={"action": "service_start", "service": name, "health_port": health.port},
    )
    try:
        body(stop)
    finally:
        stop.set()
        health.stop()
        logger.info("%s stopped", name, extra={"action": "service_stop", "service": name})


class Worker(Protocol):
    def checks(self) -> list[Check]: ...

    def run(self, stop: threading.Event) -> None: ...


def worker_command(
    name: str,
    summary: str,
    settings_class: type[S],
    factory: Callable[[S], Worker],
) -> click.Command:
    """The ``main`` of a worker service: ``--help``, ``--version``, settings, then the loop."""
    port = settings_class.model_fields["health_port"].default

    def main() -> None:
        try:
            settings = settings_class.from_environ()
        except ConfigurationError as exc:
            raise click.UsageError(str(exc)) from exc
        worker = factory(settings)
        run_worker(name, settings, worker.run, worker.checks())

    help_text = (
        f"{summary}\n\nConfigured by CHRONOVERSE_* environment variables (see "
        f"docs/configuration.md). Serves /healthz, /readyz and /metrics on "
        f"CHRONOVERSE_HEALTH_PORT (default {port}). Stops cleanly on SIGTERM."
    )
    command = click.command(name=f"chronoverse-{name}", help=help_text)(main)
    return click.version_option(__version__)(command)


def every(
    stop: threading.Event, interval_s: float, step: Callable[[], object], *, name: str
) -> None:
    """Run ``step`` every ``interval_s`` until ``stop``; a failing step is logged, not fatal."""
    while not stop.wait(interval_s):
        try:
            step()
        except Exception as exc:
            logger.warning(
                "%s failed: %s",
                name,
                exc,
                exc_info=exc,
                extra={"action": "periodic_step_failed", "step": name},
            )
