"""Each job's history (migrations/0012_job_events.sql), written by the real scheduler, executor,
lease keeper and termination against real Postgres and the real broker: "why did this job run
twice, late, or fail?" is answered by its events alone."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row

from chronoverse import lifecycle
from chronoverse.job_events import JobEventType
from chronoverse.jobs import JobMessage
from chronoverse.kafka.admin import delete_topics, ensure_topics
from chronoverse.kafka.producer import Producer
from chronoverse.postgres import Pool, create_pool
from chronoverse.scheduling import RetryPolicy, RunResult, decide_outcome
from chronoverse.settings import PostgresSettings
from services.execution_worker.executor import Executor
from services.execution_worker.leases import WORKER_LOST, LeaseBook, LeaseKeeper
from services.execution_worker.store import JobStore
from services.scheduling_worker.scheduler import Scheduler
from services.scheduling_worker.settings import Settings as SchedulerSettings
from services.server.store.workflows import TERMINATED_BY_USER
from tests.factories import Endpoint, make_user, make_workflow
from tests.integration.test_executor import EGRESS, POLICY, SECRETS, queue_job

pytestmark = pytest.mark.integration

Conn = psycopg.Connection[dict[str, Any]]


@pytest.fixture
def conn(database_url: str) -> Iterator[Conn]:
    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as conn:
        yield conn


@pytest.fixture
def pool(database_url: str) -> Iterator[Pool]:
    pool = create_pool(PostgresSettings(database_url=database_url), name="test")
    yield pool
    pool.close()


@pytest.fixture
def store(pool: Pool) -> JobStore:
    return JobStore(pool, owner="worker-a", lease_s=30)


def executor_of(store: JobStore, http: httpx.Client, policy: RetryPolicy = POLICY) -> Executor:
    return Executor(
        store=store,
        leases=LeaseBook(),
        policy=policy,
        http=http,
        egress=EGRESS,
        secrets=SECRETS,
        concurrency=2,
    )


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    with Endpoint().serving() as served:
        yield served


def events(conn: Conn, job_id: UUID) -> list[dict[str, Any]]:
    return conn.execute(
        "SELECT type, at, data FROM job_events WHERE job_id = %s ORDER BY id", (job_id,)
    ).fetchall()


def types(conn: Conn, job_id: UUID) -> list[str]:
    return [e["type"] for e in events(conn, job_id)]


def of_type(conn: Conn, job_id: UUID, kind: str) -> list[dict[str, Any]]:
    return [e["data"] for e in events(conn, job_id) if e["type"] == kind]


# --- the scheduler's side: created, published, republished ---------------------------------------


@pytest.fixture
def scheduler_settings(
    environ: Mapping[str, str], database_url: str, kafka_settings: Any
) -> Iterator[SchedulerSettings]:
    settings = SchedulerSettings.from_environ(
        {
            **environ,
            "CHRONOVERSE_DATABASE_URL": database_url,
            "CHRONOVERSE_KAFKA_TOPIC_PREFIX": f"t{uuid.uuid4().hex[:8]}.",
            "CHRONOVERSE_REQUEUE_AFTER_S": "1",
        }
    )
    ensure_topics(settings, settings.all_topics(), partitions=1)
    yield settings
    delete_topics(settings, settings.all_topics())


def test_a_completed_job_s_history_from_its_slot_to_its_end(
    scheduler_settings: SchedulerSettings, pool: Pool, store: JobStore, conn: Conn, endpoint: Any
) -> None:
    workflow_id = make_workflow(conn, make_user(conn), payload={"endpoint": endpoint.url})
    slot = conn.execute("SELECT next_run_at FROM workflows WHERE id = %s", (workflow_id,))
    slot_at = slot.fetchone()["next_run_at"]
    producer = Producer(scheduler_settings, client_id="test-events")
    try:
        scheduler = Scheduler(scheduler_settings, pool, producer)
        assert scheduler.schedule_due() == 1  # written once: created QUEUED, then published
        assert scheduler.dispatch_pending() == 0
        # Nobody claimed it in time (its message may have been lost): sent again.
        conn.execute(
            "UPDATE jobs SET published_at = now() - interval '5 seconds' WHERE workflow_id = %s",
            (workflow_id,),
        )
        assert scheduler.requeue_stale() == 1
    finally:
        producer.close()
    job_id = conn.execute("SELECT id FROM jobs WHERE workflow_id = %s", (workflow_id,)).fetchone()[
        "id"
    ]
    with httpx.Client() as http:
        executor = executor_of(store, http)
        executor.execute(JobMessage(job_id=job_id, workflow_id=workflow_id))
        executor.close()

    history = events(conn, job_id)
    assert [e["type"] for e in history] == ["created", "republished", "claimed", "finished"]
    created, republished, claimed, finished = (e["data"] for e in history)
    assert created["trigger"] == "AUTOMATIC" and created["status"] == "QUEUED"
    assert datetime.fromisoformat(created["scheduled_at"]) == slot_at
    assert created["idempotency_key"] is None
    assert republished["publish_count"] == 2 and republished["previously_published_at"]
    assert (claimed["worker"], claimed["attempt"], claimed["lease_token"]) == ("worker-a", 1, 1)
    assert claimed["delay_s"] >= 0  # how late after its slot it started
    assert finished["status"] == "COMPLETED" and finished["attempt"] == 1
    assert finished["failure_kind"] is None and finished["error"] is None
    assert finished["duration_s"] >= 0
    times = [e["at"] for e in history]
    assert times == sorted(times)


def test_a_job_that_waited_pending_is_published_by_the_dispatcher(
    scheduler_settings: SchedulerSettings, pool: Pool, conn: Conn
) -> None:
    workflow_id = make_workflow(conn, make_user(conn), next_run_at="infinity")
    job_id = conn.execute(
        "INSERT INTO jobs (workflow_id, user_id, trigger, scheduled_at) "
        "SELECT id, user_id, 'MANUAL', now() FROM workflows WHERE id = %s RETURNING id",
        (workflow_id,),
    ).fetchone()["id"]
    producer = Producer(scheduler_settings, client_id="test-events")
    try:
        assert Scheduler(scheduler_settings, pool, producer).dispatch_pending() == 1
    finally:
        producer.close()
    history = events(conn, job_id)
    assert [e["type"] for e in history] == ["created", "published"]
    created, published = (e["data"] for e in history)
    assert (created["trigger"], created["status"]) == ("MANUAL", "PENDING")
    assert published == {"publish_count": 1, "previously_published_at": None}


# --- the execution worker's side ----------------------------------------------------------------


def test_a_system_failure_retried_then_failed_tells_why_it_ran_twice(
    conn: Conn, pool: Pool
) -> None:
    class Broken(httpx.Client):
        def stream(self, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("worker bug")

    workflow_id = make_workflow(conn, make_user(conn), payload={"endpoint": "http://127.0.0.1:9/x"})
    message = queue_job(conn, workflow_id)
    with Broken() as http:
        executor = executor_of(JobStore(pool, owner="worker-a", lease_s=30), http)
        executor.execute(message)
        executor.execute(message)  # the retry, published again by the scheduler
        executor.close()

    assert types(conn, message.job_id) == [
        "created",
        "claimed",
        "retry_scheduled",
        "claimed",
        "finished",
    ]
    [retry] = of_type(conn, message.job_id, "retry_scheduled")
    assert retry["attempt"] == 1 and retry["handed_back"] is False
    assert "worker bug" in retry["reason"] and "retrying" in retry["reason"]
    assert datetime.fromisoformat(retry["retry_at"]) <= datetime.now(UTC)
    assert [c["attempt"] for c in of_type(conn, message.job_id, "claimed")] == [1, 2]
    [finished] = of_type(conn, message.job_id, "finished")
    assert (finished["status"], finished["failure_kind"], finished["attempt"]) == (
        "FAILED",
        "SYSTEM",
        2,
    )
    assert "worker bug" in finished["error"]


def test_a_lapsed_lease_recovered_by_another_worker_tells_who_lost_it(
    conn: Conn, pool: Pool, endpoint: Endpoint
) -> None:
    workflow_id = make_workflow(conn, make_user(conn), payload={"endpoint": endpoint.url})
    message = queue_job(conn, workflow_id)
    worker_a = JobStore(pool, owner="worker-a", lease_s=30)
    worker_b = JobStore(pool, owner="worker-b", lease_s=30)
    [claim] = worker_a.claim([message.job_id])
    # Worker A stalls past its lease; worker B's lease keeper recovers the job, then runs it.
    conn.execute(
        "UPDATE jobs SET lease_expires_at = now() - interval '1 second' WHERE id = %s",
        (message.job_id,),
    )
    assert LeaseKeeper(worker_b, LeaseBook(), policy=POLICY).recover_expired() == 1
    with httpx.Client() as http:
        executor = executor_of(worker_b, http)
        executor.execute(message)
        executor.close()
    # Worker A wakes up: its late result is fenced off and leaves no event.
    late = decide_outcome(RunResult.success(), attempt=1, policy=POLICY, now=datetime.now(UTC))
    assert worker_a.record(message.job_id, claim.lease_token, late).written is False

    assert types(conn, message.job_id) == [
        "created",
        "claimed",
        "lease_lost",
        "retry_scheduled",
        "claimed",
        "finished",
    ]
    [lost] = of_type(conn, message.job_id, "lease_lost")
    assert (lost["worker"], lost["attempt"], lost["lease_token"]) == ("worker-a", 1, 1)
    assert datetime.fromisoformat(lost["expired_at"]) < datetime.now(UTC)
    [retry] = of_type(conn, message.job_id, "retry_scheduled")
    assert WORKER_LOST in retry["reason"] and retry["handed_back"] is False
    claims = of_type(conn, message.job_id, "claimed")
    assert [(c["worker"], c["attempt"], c["lease_token"]) for c in claims] == [
        ("worker-a", 1, 1),
        ("worker-b", 2, 2),
    ]
    [finished] = of_type(conn, message.job_id, "finished")
    assert (finished["status"], finished["attempt"]) == ("COMPLETED", 2)
    assert endpoint.hits == 1


def test_a_late_renewal_is_a_recovered_lease_and_a_timely_one_is_no_event(
    conn: Conn, pool: Pool, store: JobStore
) -> None:
    message = queue_job(conn, make_workflow(conn, make_user(conn)))
    [claim] = store.claim([message.job_id])
    assert store.renew({claim.job_id: claim.lease_token}) == {claim.job_id}
    assert types(conn, message.job_id) == ["created", "claimed"]  # the hot path writes nothing
    conn.execute(
        "UPDATE jobs SET lease_expires_at = now() - interval '2 seconds' WHERE id = %s",
        (message.job_id,),
    )
    assert store.renew({claim.job_id: claim.lease_token}) == {claim.job_id}
    assert types(conn, message.job_id) == ["created", "claimed", "lease_recovered"]
    [recovered] = of_type(conn, message.job_id, "lease_recovered")
    assert (recovered["worker"], recovered["attempt"]) == ("worker-a", 1)
    assert datetime.fromisoformat(recovered["expired_at"]) < datetime.fromisoformat(
        recovered["lease_expires_at"]
    )


def test_a_container_a_log_gap_and_a_hand_back_are_recorded(conn: Conn, store: JobStore) -> None:
    message = queue_job(conn, make_workflow(conn, make_user(conn)))
    [claim] = store.claim([message.job_id])
    assert store.set_container(message.job_id, claim.lease_token, "c0ffee")
    assert store.mark_logs_incomplete(message.job_id, claim.lease_token)
    assert store.mark_logs_incomplete(message.job_id, claim.lease_token)  # already: no event
    store.hand_back({claim.job_id: claim.lease_token}, error="handed back by a stopping worker")
    assert types(conn, message.job_id) == [
        "created",
        "claimed",
        "container_started",
        "log_gap",
        "retry_scheduled",
    ]
    assert of_type(conn, message.job_id, "container_started") == [
        {"container_id": "c0ffee", "attempt": 1}
    ]
    assert of_type(conn, message.job_id, "log_gap") == [{"attempt": 1}]
    [retry] = of_type(conn, message.job_id, "retry_scheduled")
    assert retry["handed_back"] is True and retry["reason"] == "handed back by a stopping worker"


# --- cancellations: by whom -----------------------------------------------------------------------


def test_a_job_running_when_its_user_terminated_the_workflow_is_canceled_by_the_user(
    conn: Conn, pool: Pool, store: JobStore
) -> None:
    user_id = make_user(conn)
    workflow_id = make_workflow(conn, user_id)
    running, waiting = queue_job(conn, workflow_id), queue_job(conn, workflow_id)
    [claim] = store.claim([running.job_id])
    with pool.connection() as tx:
        assert lifecycle.terminate(tx, workflow_id, reason=TERMINATED_BY_USER, user_id=user_id)
    # The worker's run ends (its container was stopped): recorded as canceled, not failed.
    stopped = decide_outcome(
        RunResult.user_failure("exit 137", exit_code=137),
        attempt=1,
        policy=POLICY,
        now=datetime.now(UTC),
    )
    assert store.record(running.job_id, claim.lease_token, stopped).written

    assert types(conn, running.job_id) == ["created", "claimed", "canceled"]
    [canceled] = of_type(conn, running.job_id, "canceled")
    assert canceled == {
        "by": "user",
        "reason": TERMINATED_BY_USER,
        "previous_status": "RUNNING",
        "attempt": 1,
    }
    assert types(conn, waiting.job_id) == ["created", "canceled"]
    [never_ran] = of_type(conn, waiting.job_id, "canceled")
    assert (never_ran["by"], never_ran["previous_status"], never_ran["attempt"]) == (
        "user",
        "QUEUED",
        0,
    )


def test_jobs_canceled_by_auto_termination_say_after_how_many_failures(
    conn: Conn, store: JobStore, endpoint: Endpoint
) -> None:
    endpoint.status = 500
    workflow_id = make_workflow(
        conn, make_user(conn), payload={"endpoint": endpoint.url}, max_failures=1
    )
    failing, pending = queue_job(conn, workflow_id), queue_job(conn, workflow_id)
    with httpx.Client() as http:
        executor = executor_of(store, http)
        executor.execute(failing)
        executor.close()

    assert types(conn, failing.job_id) == ["created", "claimed", "finished"]
    [finished] = of_type(conn, failing.job_id, "finished")
    assert (finished["status"], finished["failure_kind"]) == ("FAILED", "USER")
    assert "got 500" in finished["error"]
    assert types(conn, pending.job_id) == ["created", "canceled"]
    [canceled] = of_type(conn, pending.job_id, "canceled")
    assert canceled["by"] == "auto-termination"
    assert canceled["reason"].startswith("terminated after 1 consecutive failed jobs")
    assert "got 500" in canceled["reason"]


def test_a_lapsed_final_attempt_ends_with_lease_lost_log_gap_and_failure(
    conn: Conn, store: JobStore
) -> None:
    message = queue_job(conn, make_workflow(conn, make_user(conn)))
    store.claim([message.job_id])
    conn.execute(
        "UPDATE jobs SET lease_expires_at = now() - interval '1 second' WHERE id = %s",
        (message.job_id,),
    )
    once = RetryPolicy(max_attempts=1, base_delay_s=0, max_delay_s=0)
    assert LeaseKeeper(store, LeaseBook(), policy=once).recover_expired() == 1
    assert types(conn, message.job_id) == [
        "created",
        "claimed",
        "lease_lost",
        "log_gap",
        "finished",
    ]
    [finished] = of_type(conn, message.job_id, "finished")
    assert (finished["status"], finished["failure_kind"]) == ("FAILED", "SYSTEM")
    assert finished["error"].startswith(WORKER_LOST)


def test_every_type_written_is_a_known_one(conn: Conn, store: JobStore) -> None:
    message = queue_job(conn, make_workflow(conn, make_user(conn)))
    store.claim([message.job_id])
    written = {r["type"] for r in conn.execute("SELECT DISTINCT type FROM job_events")}
    assert written <= set(JobEventType)
    defined = conn.execute(
        "SELECT prosrc FROM pg_proc WHERE proname = 'chronoverse_job_transition'"
    ).fetchone()["prosrc"]
    # Every type the trigger can write is one that readers know.
    for kind in JobEventType:
        if kind is not JobEventType.CREATED:
            assert f"'{kind.value}'" in defined
