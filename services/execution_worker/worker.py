"""The execution-worker process: wires the `jobs` consumer, the executor, leases and the reapers."""

from __future__ import annotations

import threading
from uuid import UUID

from chronoverse import containers, redis_store
from chronoverse.checks import assignment_check, kafka_check, postgres_check, redis_check
from chronoverse.definition_cache import DefinitionCache
from chronoverse.domain import Topic
from chronoverse.egress import policy_from_settings
from chronoverse.health import Check
from chronoverse.jobs import JobMessage, decode_job_message
from chronoverse.kafka.assignment import AssignmentWatch
from chronoverse.kafka.consumer import ConsumerLoop, ConsumerOptions
from chronoverse.kafka.producer import StreamingProducer
from chronoverse.payloads import ContainerPolicy
from chronoverse.postgres import create_pool
from chronoverse.runtime import every
from chronoverse.scheduling import RetryPolicy
from chronoverse.secrets import SecretBox
from chronoverse.webhooks import RetryPolicy as WebhookRetryPolicy
from services.execution_worker import heartbeat
from services.execution_worker.containers import ContainerRunner
from services.execution_worker.executor import Executor
from services.execution_worker.leases import LeaseBook, LeaseKeeper
from services.execution_worker.leftovers import Leftovers
from services.execution_worker.logship import LogShipper
from services.execution_worker.reaper import Reaper
from services.execution_worker.sandbox import Sandbox
from services.execution_worker.settings import Settings
from services.execution_worker.store import JobStore
from services.execution_worker.volumes import Janitor
from services.execution_worker.webhooks import DeliveryLoop, DeliveryStore

CONSUMER_GROUP = "chronoverse-execution-worker"


class ExecutionWorker:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._watch = AssignmentWatch.for_group(settings, settings.group(CONSUMER_GROUP))

    def checks(self) -> list[Check]:
        s = self._settings
        return [
            postgres_check(s),
            kafka_check(s, (s.topic(Topic.JOBS), s.topic(Topic.JOB_LOGS))),
            assignment_check(self._watch),
            redis_check(s),
            containers.docker_check(s),
        ]

    def run(self, stop: threading.Event) -> None:
        s = self._settings
        policy = RetryPolicy(
            max_attempts=s.retry_max_attempts,
            base_delay_s=s.retry_base_delay_s,
            max_delay_s=s.retry_max_delay_s,
        )
        # One connection per concurrent job, plus the lease keeper's and the reaper's. The
        # consumer's handler threads borrow from the same pool for their batch claims and
        # records; they hold a connection only for one statement or transaction, so at worst
        # they wait for one.
        pool = create_pool(
            s.model_copy(update={"database_pool_max_size": s.concurrency + 3}),
            name="execution-worker",
        )
        store = JobStore(pool, owner=s.worker_id, lease_s=s.lease_s, public_url=s.public_url)
        leases = LeaseBook()
        http = heartbeat.http_client(max_connections=s.concurrency * 2)
        docker_client = containers.connect(s, timeout_s=60)
        redis_client = redis_store.connect(s)
        logs_topic = s.topic(Topic.JOB_LOGS)
        log_producer = StreamingProducer(s, client_id=f"execution-{s.worker_id}-logs")
        secrets = SecretBox.from_settings(s)

        def shippers(job_id: UUID, attempt: int) -> LogShipper:
            return LogShipper(log_producer, logs_topic, job_id, attempt=attempt)

        # The containers dead attempts left: cleared before a job's next attempt, and reaped.
        leftovers = Leftovers(
            docker_client,
            shippers,
            installation=s.installation,
            max_log_chars=s.max_log_chars_per_job,
        )
        runner = ContainerRunner(
            docker_client=docker_client,
            definitions=DefinitionCache(redis_client, secrets, ttl_s=s.definition_cache_ttl_s),
            secrets=secrets,
            policy=ContainerPolicy.from_settings(s),
            sandbox=Sandbox(
                user=None if s.container_user == "image" else s.container_user,
                tmpfs_mb=s.container_tmpfs_mb,
                nofile=s.container_nofile,
            ),
            shippers=shippers,
            touch_volume=store.touch_volume,
            leftovers=leftovers,
            stop_grace_s=s.stop_grace_s,
            max_log_chars=s.max_log_chars_per_job,
            installation=s.installation,
            removal_threads=s.concurrency,
        )
        egress = policy_from_settings(s)
        executor = Executor(
            store=store,
            leases=leases,
            containers=runner,
            policy=policy,
            http=http,
            egress=egress,
            secrets=secrets,
            concurrency=s.concurrency,
        )
        reaper = Reaper(
            docker_client,
            owned=store.owned,
            # A finished container this worker is removing is not an orphan.
            mine=lambda: set(leases.snapshot()) | runner.removing(),
            installation=s.installation,
            salvage=leftovers.salvage,
        )
        janitor = Janitor(docker_client, store, installation=s.installation)
        keeper = LeaseKeeper(store, leases, policy=policy)
        # Webhooks have their own threads, connections and HTTP transports: a receiver that
        # hangs holds one of those, never a job's.
        webhook_pool = create_pool(
            s.model_copy(update={"database_pool_max_size": s.webhook_concurrency + 1}),
            name="execution-worker-webhooks",
        )
        deliveries = DeliveryLoop(
            DeliveryStore(webhook_pool),
            secrets=secrets,
            egress=egress,
            retry=WebhookRetryPolicy(
                max_attempts=s.webhook_max_attempts,
                base_delay_s=s.webhook_backoff_base_s,
                max_delay_s=s.webhook_backoff_max_s,
            ),
            concurrency=s.webhook_concurrency,
            poll_interval_s=s.webhook_poll_interval_s,
            timeout_s=s.webhook_timeout_s,
        )
        webhooks_stop = threading.Event()
        webhooks = threading.Thread(
            target=deliveries.run, args=(webhooks_stop,), name="webhook-delivery", daemon=True
        )
        webhooks.start()
        background_stop = threading.Event()
        background = [
            threading.Thread(
                target=keeper.run, args=(background_stop,), name="lease-keeper", daemon=True
            ),
            threading.Thread(
                target=every,
                args=(background_stop, s.reaper_interval_s, reaper.reap),
                kwargs={"name": "container reaper"},
                name="reaper",
                daemon=True,
            ),
            threading.Thread(
                target=every,
                args=(background_stop, s.volume_sweep_interval_s, janitor.sweep),
                kwargs={"name": "volume janitor"},
                name="volume-janitor",
                daemon=True,
            ),
        ]
        for thread in background:
            thread.start()
        loop: ConsumerLoop[JobMessage] = ConsumerLoop(
            s,
            ConsumerOptions(
                group_id=s.group(CONSUMER_GROUP),
                topics=(s.topic(Topic.JOBS),),
                client_id=f"execution-{s.worker_id}",
                max_batch_size=s.job_batch_size,
                # Handler threads: each waits for its batch's jobs on the executor's job pool.
                concurrency=s.concurrency,
                max_in_flight=2 * max(s.concurrency, s.job_batch_size),
                shutdown_timeout_s=s.shutdown_grace_s,
            ),
            decode=decode_job_message,
            handle=executor.handle,
            watch=self._watch,
        )
        try:
            loop.run(stop)
        finally:
            # Leases were renewed while the loop drained its in-flight jobs; whatever is still
            # running after the grace period goes back to PENDING for another worker, at once
            # rather than after its lease lapses (the next attempt, or a reaper, then stops its
            # container and keeps its output). Claiming stops first: a job claimed after the
            # hand-back would stay RUNNING with nobody renewing its lease.
            executor.stop()
            background_stop.set()
            webhooks_stop.set()
            for thread in background:
                thread.join(timeout=5)
            # Attempts in flight finish (each ends by its deadline) and are recorded.
            webhooks.join(timeout=s.webhook_timeout_s + s.webhook_poll_interval_s + 5)
            webhook_pool.close()
            runner.close()
            log_producer.close()
            http.close()
            docker_client.close()
            redis_client.close()
            pool.close()
