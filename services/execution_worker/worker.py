"""The execution-worker process: the `jobs` consumer, the executor and the lease keeper."""

from __future__ import annotations

import threading

import httpx

from chronoverse.checks import docker_check, kafka_check, postgres_check, redis_check
from chronoverse.domain import Topic
from chronoverse.health import Check
from chronoverse.jobs import JobMessage, decode_job_message
from chronoverse.kafka.consumer import ConsumerLoop, ConsumerOptions
from chronoverse.postgres import create_pool
from chronoverse.scheduling import RetryPolicy
from services.execution_worker.executor import Executor, LeaseKeeper
from services.execution_worker.settings import Settings

CONSUMER_GROUP = "chronoverse-execution-worker"


class ExecutionWorker:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def checks(self) -> list[Check]:
        s = self._settings
        return [
            postgres_check(s),
            kafka_check(s, (s.topic(Topic.JOBS), s.topic(Topic.JOB_LOGS))),
            redis_check(s),
            docker_check(s),
        ]

    def run(self, stop: threading.Event) -> None:
        s = self._settings
        policy = RetryPolicy(
            max_attempts=s.retry_max_attempts,
            base_delay_s=s.retry_base_delay_s,
            max_delay_s=s.retry_max_delay_s,
        )
        # One connection per concurrent job, plus the lease keeper's.
        pool = create_pool(
            s.model_copy(update={"database_pool_max_size": s.concurrency + 2}),
            name="execution-worker",
        )
        http = httpx.Client(
            follow_redirects=False, limits=httpx.Limits(max_connections=s.concurrency * 2)
        )
        executor = Executor(
            pool=pool, worker_id=s.worker_id, lease_s=s.lease_s, policy=policy, http=http
        )
        keeper = LeaseKeeper(executor, pool=pool, lease_s=s.lease_s, policy=policy)
        keeper_stop = threading.Event()
        keeper_thread = threading.Thread(
            target=keeper.run, args=(keeper_stop,), name="lease-keeper", daemon=True
        )
        keeper_thread.start()
        loop: ConsumerLoop[JobMessage] = ConsumerLoop(
            s,
            ConsumerOptions(
                group_id=s.group(CONSUMER_GROUP),
                topics=(s.topic(Topic.JOBS),),
                client_id=f"execution-{s.worker_id}",
                max_batch_size=1,
                concurrency=s.concurrency,
                max_in_flight=s.concurrency * 2,
                shutdown_timeout_s=s.shutdown_grace_s,
            ),
            decode=decode_job_message,
            handle=executor.handle,
        )
        try:
            loop.run(stop)
        finally:
            # Leases were renewed while the loop drained its in-flight jobs; whatever is still
            # running after the grace period goes back to PENDING for another worker, at once
            # rather than after its lease lapses.
            executor.hand_back_all()
            keeper_stop.set()
            keeper_thread.join(timeout=5)
            http.close()
            pool.close()
