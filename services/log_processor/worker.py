"""The log-processor's main loop."""

from __future__ import annotations

import logging
import threading

from chronoverse.checks import kafka_check, postgres_check, redis_check
from chronoverse.domain import Topic
from chronoverse.health import Check
from services.log_processor.settings import Settings

logger = logging.getLogger(__name__)


class LogProcessor:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def checks(self) -> list[Check]:
        s = self._settings
        return [postgres_check(s), kafka_check(s, (s.topic(Topic.JOB_LOGS),)), redis_check(s)]

    def run(self, stop: threading.Event) -> None:
        # Skeleton: the loop arrives with the scheduling and container issues. Until then the
        # process starts, reports readiness of its dependencies and stops cleanly on SIGTERM.
        stop.wait()
