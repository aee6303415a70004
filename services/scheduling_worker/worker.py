"""The scheduling-worker process: wiring for the scheduling loop and the retention thread."""

from __future__ import annotations

import threading

from chronoverse.checks import kafka_check, postgres_check
from chronoverse.domain import Topic
from chronoverse.health import Check
from chronoverse.kafka.producer import Producer
from chronoverse.postgres import create_pool
from services.scheduling_worker.retention import Retention, RetentionPolicy
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
        s = self._settings
        retention = Retention(pool, RetentionPolicy.from_settings(s), pause_s=s.retention_pause_s)
        retention_stop = threading.Event()
        # Its own thread: a retention statement never delays scheduling or dispatch.
        pruner = threading.Thread(
            target=retention.run,
            args=(retention_stop,),
            kwargs={"interval_s": s.retention_interval_s},
            name="retention",
            daemon=True,
        )
        pruner.start()
        try:
            Scheduler(s, pool, producer).run(stop)
        finally:
            retention_stop.set()
            pruner.join(timeout=10)
            producer.close()
            pool.close()
