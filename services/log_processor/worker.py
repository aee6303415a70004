"""The log-processor process: the `job_logs` consumer and the processor, and the purger of lines
that workflows do not retain."""

from __future__ import annotations

import threading

from chronoverse import redis_store
from chronoverse.checks import assignment_check, kafka_check, postgres_check, redis_check
from chronoverse.domain import Topic
from chronoverse.health import Check
from chronoverse.kafka.assignment import AssignmentWatch
from chronoverse.kafka.consumer import ConsumerLoop, ConsumerOptions
from chronoverse.logs import EndMessage, ShippedLines, decode_shipped_message
from chronoverse.postgres import create_pool
from services.log_processor.processor import LogProcessor
from services.log_processor.retention import LogPurger
from services.log_processor.settings import Settings

CONSUMER_GROUP = "chronoverse-log-processor"


class LogProcessorWorker:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._watch = AssignmentWatch.for_group(settings, settings.group(CONSUMER_GROUP))

    def checks(self) -> list[Check]:
        s = self._settings
        return [
            postgres_check(s),
            kafka_check(s, (s.topic(Topic.JOB_LOGS),)),
            assignment_check(self._watch),
            redis_check(s),
        ]

    def run(self, stop: threading.Event) -> None:
        s = self._settings
        pool = create_pool(s, name="log-processor")
        redis_client = redis_store.connect(s)
        loop: ConsumerLoop[ShippedLines | EndMessage] = ConsumerLoop(
            s,
            ConsumerOptions(
                group_id=s.group(CONSUMER_GROUP),
                topics=(s.topic(Topic.JOB_LOGS),),
                client_id="chronoverse-log-processor",
                max_batch_size=s.log_batch_messages,
                concurrency=s.log_concurrency,
                max_in_flight=s.log_batch_messages * s.log_concurrency * 2,
            ),
            decode=decode_shipped_message,
            handle=LogProcessor(pool, redis_client, purge_grace_s=s.log_purge_grace_s).handle,
            watch=self._watch,
        )
        purger = threading.Thread(
            target=LogPurger(
                pool, interval_s=s.log_purge_interval_s, batch_lines=s.log_purge_batch_lines
            ).run,
            args=(stop,),
            name="log-purger",
            daemon=True,
        )
        purger.start()
        try:
            loop.run(stop)
        finally:
            stop.set()  # the loop also ends on its own error: the purger ends with it
            purger.join()
            pool.close()
            redis_client.close()
