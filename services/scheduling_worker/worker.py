"""The scheduling-worker process: wiring for the scheduling loop."""

from __future__ import annotations

import threading

from chronoverse.checks import kafka_check, postgres_check
from chronoverse.domain import Topic
from chronoverse.health import Check
from chronoverse.kafka.producer import Producer
from chronoverse.postgres import create_pool
from services.scheduling_worker.scheduler import Scheduler
from services.scheduling_worker.settings import Settings


class SchedulingWorker:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def checks(self) -> list[Check]:
        s = self._settings
        return [postgres_check(s), kafka_check(s, (s.topic(Topic.JOBS), s.topic(Topic.WORKFLOWS)))]

    def run(self, stop: threading.Event) -> None:
        pool = create_pool(self._settings, name="scheduling-worker")
        producer = Producer(
            self._settings,
            client_id="chronoverse-scheduling-worker",
            delivery_timeout_s=self._settings.publish_timeout_s,
        )
        try:
            Scheduler(self._settings, pool, producer).run(stop)
        finally:
            producer.close()
            pool.close()
