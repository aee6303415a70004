"""The scheduling worker's steps against real Postgres and the real broker."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import confluent_kafka
import psycopg
import pytest
from psycopg.rows import dict_row

from chronoverse.domain import Topic
from chronoverse.errors import PublishError
from chronoverse.jobs import decode_job_message
from chronoverse.kafka.admin import delete_topics, ensure_topics
from chronoverse.kafka.producer import Producer
from chronoverse.postgres import Pool, create_pool
from services.scheduling_worker.scheduler import Scheduler
from services.scheduling_worker.settings import Settings
from tests.factories import make_user, make_workflow

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(
    environ: Mapping[str, str], database_url: str, kafka_settings: Any
) -> Iterator[Settings]:
    settings = Settings.from_environ(
        {
            **environ,
            "CHRONOVERSE_DATABASE_URL": database_url,
            "CHRONOVERSE_KAFKA_TOPIC_PREFIX": f"t{uuid.uuid4().hex[:8]}.",
            "CHRONOVERSE_REQUEUE_AFTER_S": "1",
            "CHRONOVERSE_SWEEP_INTERVAL_S": "0.1",
        }
    )
    ensure_topics(settings, settings.all_topics(), partitions=2)
    yield settings
    delete_topics(settings, settings.all_topics())


@pytest.fixture
def pool(settings: Settings) -> Iterator[Pool]:
    pool = create_pool(settings, name="test-scheduler")
    yield pool
    pool.close()


@pytest.fixture
def producer(settings: Settings) -> Iterator[Producer]:
    producer = Producer(settings, client_id="test-scheduler")
    yield producer
    producer.close()


@pytest.fixture
def conn(settings: Settings) -> Iterator[psycopg.Connection[dict[str, Any]]]:
    with psycopg.connect(settings.database_url, autocommit=True, row_factory=dict_row) as conn:
        yield conn


def read_topic(
    settings: Settings, topic: Topic, expected: int, timeout_s: float = 20
) -> list[bytes]:
    consumer = confluent_kafka.Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "group.id": f"reader-{uuid.uuid4().hex[:6]}",
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,
        }
    )
    consumer.subscribe([settings.topic(topic)])
    values: list[bytes] = []
    deadline = datetime.now(UTC) + timedelta(seconds=timeout_s)
    try:
        while len(values) < expected and datetime.now(UTC) < deadline:
            for message in consumer.consume(num_messages=100, timeout=0.5):
                if message.error() is None and message.value() is not None:
                    values.append(message.value())
    finally:
        consumer.close()
    return values


def jobs_of(
    conn: psycopg.Connection[dict[str, Any]], workflow_id: uuid.UUID
) -> list[dict[str, Any]]:
    return conn.execute(
        "SELECT * FROM jobs WHERE workflow_id = %s ORDER BY scheduled_at", (workflow_id,)
    ).fetchall()


def test_a_due_workflow_gets_one_job_written_once_queued_and_published(
    settings: Settings, pool: Pool, producer: Producer, conn: Any
) -> None:
    workflow_id = make_workflow(conn, make_user(conn), interval=5)
    before = conn.execute(
        "SELECT next_run_at FROM workflows WHERE id = %s", (workflow_id,)
    ).fetchone()["next_run_at"]
    scheduler = Scheduler(settings, pool, producer)
    assert scheduler.schedule_due() == 1
    [created] = jobs_of(conn, workflow_id)
    assert (created["status"], created["trigger"], created["scheduled_at"]) == (
        "QUEUED",
        "AUTOMATIC",
        before,
    )
    assert created["publish_count"] == 1 and created["published_at"] is not None
    assert created["queued_at"] is not None
    [value] = read_topic(settings, Topic.JOBS, 1)
    message = decode_job_message(None, value)
    assert (message.job_id, message.workflow_id) == (created["id"], workflow_id)
    after = conn.execute(
        "SELECT next_run_at FROM workflows WHERE id = %s", (workflow_id,)
    ).fetchone()["next_run_at"]
    assert after == before + timedelta(minutes=5)
    assert scheduler.schedule_due() == 0  # not due again
    assert scheduler.dispatch_pending() == 0  # nothing left PENDING


def test_a_job_whose_send_failed_after_its_commit_is_sent_by_the_next_pass(
    settings: Settings, pool: Pool, conn: Any
) -> None:
    """Jobs are committed QUEUED before their messages go out: a broker that refuses the send
    leaves the message with the scheduler, which sends it before any new work."""
    workflow_id = make_workflow(conn, make_user(conn), interval=5)
    unreachable = Producer(
        settings.model_copy(update={"kafka_bootstrap_servers": "127.0.0.1:1"}),
        client_id="test-unreachable",
        delivery_timeout_s=1.0,
    )
    try:
        scheduler = Scheduler(settings, pool, unreachable)
        with pytest.raises(PublishError):
            scheduler.schedule_due()
    finally:
        unreachable.close()
    [job] = jobs_of(conn, workflow_id)
    assert job["status"] == "QUEUED"  # committed, not yet sent
    assert read_topic(settings, Topic.JOBS, 1, timeout_s=2) == []
    working = Producer(settings, client_id="test-working")
    try:
        scheduler._producer = working  # the broker is back (what reset() does)
        assert scheduler.schedule_due() == 0  # nothing new is due, the message goes out first
    finally:
        working.close()
    [value] = read_topic(settings, Topic.JOBS, 1)
    assert decode_job_message(None, value).job_id == job["id"]


def test_workflows_not_built_or_terminated_are_not_scheduled(
    settings: Settings, pool: Pool, producer: Producer, conn: Any
) -> None:
    user = make_user(conn)
    make_workflow(conn, user, build_status="QUEUED")
    terminated = make_workflow(conn, user)
    conn.execute(
        "UPDATE workflows SET terminated_at = now(), terminated_reason = 'x' WHERE id = %s",
        (terminated,),
    )
    make_workflow(conn, user, next_run_at=datetime.now(UTC) + timedelta(minutes=1))
    assert Scheduler(settings, pool, producer).schedule_due() == 0


def test_catch_up_runs_the_latest_missed_slot_and_records_the_rest(
    settings: Settings, pool: Pool, producer: Producer, conn: Any
) -> None:
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10, seconds=30)
    workflow_id = make_workflow(conn, make_user(conn), interval=1, next_run_at=start)
    Scheduler(settings, pool, producer).schedule_due()
    [created] = jobs_of(conn, workflow_id)
    assert created["scheduled_at"] == start + timedelta(minutes=10)
    [skip] = conn.execute(
        "SELECT * FROM skipped_runs WHERE workflow_id = %s", (workflow_id,)
    ).fetchall()
    assert (skip["reason"], skip["slots"]) == ("MISSED", 10)
    assert (skip["first_scheduled_at"], skip["last_scheduled_at"]) == (
        start,
        start + timedelta(minutes=9),
    )


def test_an_active_job_makes_the_slot_skip(
    settings: Settings, pool: Pool, producer: Producer, conn: Any
) -> None:
    workflow_id = make_workflow(conn, make_user(conn))
    conn.execute(
        "INSERT INTO jobs (workflow_id, user_id, trigger, scheduled_at, status) "
        "SELECT id, user_id, 'MANUAL', now(), 'RUNNING' FROM workflows WHERE id = %s",
        (workflow_id,),
    )
    Scheduler(settings, pool, producer).schedule_due()
    assert [j["trigger"] for j in jobs_of(conn, workflow_id)] == ["MANUAL"]
    [skip] = conn.execute(
        "SELECT * FROM skipped_runs WHERE workflow_id = %s", (workflow_id,)
    ).fetchall()
    assert skip["reason"] == "OVERLAP" and skip["detail"] == "the previous job was still active"


def test_two_schedulers_at_once_create_no_duplicates(
    settings: Settings, producer: Producer, conn: Any
) -> None:
    user = make_user(conn)
    ids = [make_workflow(conn, user) for _ in range(300)]
    pools = [create_pool(settings, name=f"s{i}") for i in range(2)]
    claimed: list[int] = []
    barrier = threading.Barrier(2)

    def run(pool: Pool) -> None:
        small = Settings.model_validate({**settings.model_dump(), "schedule_batch_size": 25})
        scheduler = Scheduler(small, pool, producer)
        barrier.wait()
        while (n := scheduler.schedule_due()) > 0:
            claimed.append(n)

    threads = [threading.Thread(target=run, args=(p,)) for p in pools]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for p in pools:
        p.close()
    assert sum(claimed) == 300
    counts = conn.execute(
        "SELECT workflow_id, count(*) AS n FROM jobs GROUP BY workflow_id"
    ).fetchall()
    assert sorted(r["workflow_id"] for r in counts) == sorted(ids)
    assert {r["n"] for r in counts} == {1}


def test_a_job_left_unsent_by_a_crash_after_its_commit_is_sent_by_the_sweeper(
    settings: Settings, pool: Pool, producer: Producer, conn: Any
) -> None:
    workflow_id = make_workflow(conn, make_user(conn))
    dead = Settings.model_validate(
        {**settings.model_dump(), "kafka_bootstrap_servers": "127.0.0.1:1"}
    )
    unreachable = Producer(dead, client_id="dead", delivery_timeout_s=1)
    try:
        with pytest.raises(PublishError):
            Scheduler(settings, pool, unreachable).schedule_due()
    finally:
        unreachable.close()
    [waiting] = jobs_of(conn, workflow_id)
    assert waiting["status"] == "QUEUED"  # committed, not lost
    # That scheduler is gone with its unsent message; another one's sweeper sends it again once
    # it is older than CHRONOVERSE_REQUEUE_AFTER_S.
    other = Scheduler(settings, pool, producer)
    assert other.schedule_due() == 0  # the workflow advanced: no second job for the slot
    conn.execute(
        "UPDATE jobs SET published_at = now() - interval '5 seconds' WHERE workflow_id = %s",
        (workflow_id,),
    )
    assert other.requeue_stale() == 1
    [value] = read_topic(settings, Topic.JOBS, 1)
    assert decode_job_message(None, value).job_id == waiting["id"]


def test_queued_jobs_nobody_claimed_are_published_again(
    settings: Settings, pool: Pool, producer: Producer, conn: Any
) -> None:
    workflow_id = make_workflow(conn, make_user(conn))
    patient = Settings.model_validate({**settings.model_dump(), "requeue_after_s": 60})
    scheduler = Scheduler(patient, pool, producer)
    scheduler.schedule_due()
    assert scheduler.requeue_stale() == 0  # published just now
    conn.execute(
        "UPDATE jobs SET published_at = now() - interval '2 minutes' WHERE workflow_id = %s",
        (workflow_id,),
    )
    assert scheduler.requeue_stale() == 1
    [again] = jobs_of(conn, workflow_id)
    assert (again["status"], again["publish_count"]) == ("QUEUED", 2)
    assert len(read_topic(settings, Topic.JOBS, 2)) == 2


def test_the_outbox_is_relayed_in_order_once(
    settings: Settings, pool: Pool, producer: Producer, conn: Any
) -> None:
    for n in range(3):
        conn.execute(
            "INSERT INTO outbox (topic, key, payload) VALUES ('workflows', 'k', %s)",
            (f'{{"n": {n}}}',),
        )
    scheduler = Scheduler(settings, pool, producer)
    assert scheduler.relay_outbox() == 3
    assert scheduler.relay_outbox() == 0
    assert (
        conn.execute("SELECT count(*) AS n FROM outbox WHERE published_at IS NULL").fetchone()["n"]
        == 0
    )
    assert read_topic(settings, Topic.WORKFLOWS, 3) == [b'{"n":0}', b'{"n":1}', b'{"n":2}']


def test_old_outbox_events_and_expired_keys_are_pruned(
    settings: Settings, pool: Pool, producer: Producer, conn: Any
) -> None:
    user_id = make_user(conn)
    conn.execute(
        "INSERT INTO outbox (topic, key, payload, published_at) VALUES "
        "('workflows', 'old', '{}', now() - interval '2 days'), "
        "('workflows', 'recent', '{}', now()), ('workflows', 'unsent', '{}', NULL)"
    )
    conn.execute(
        "INSERT INTO idempotency_keys (user_id, key, fingerprint, status_code, "
        "response_body, expires_at) VALUES "
        "(%s, 'gone', '\\x00', 201, '{}', now() - interval '1 s'), "
        "(%s, 'kept', '\\x00', 201, '{}', now() + interval '1 hour')",
        (user_id, user_id),
    )
    Scheduler(settings, pool, producer).prune()
    assert [r["key"] for r in conn.execute("SELECT key FROM outbox ORDER BY id")] == [
        "recent",
        "unsent",
    ]
    assert [r["key"] for r in conn.execute("SELECT key FROM idempotency_keys")] == ["kept"]


def test_an_idle_scheduler_wakes_when_the_next_workflow_comes_due(
    settings: Settings, pool: Pool, producer: Producer, conn: Any
) -> None:
    scheduler = Scheduler(settings, pool, producer)
    assert scheduler.idle_wait_s() == settings.poll_interval_s  # nothing scheduled
    soon = datetime.now(UTC) + timedelta(milliseconds=300)
    make_workflow(conn, make_user(conn), next_run_at=soon)
    assert 0 < scheduler.idle_wait_s() <= 0.3


def test_the_one_statement_path_and_the_planner_agree_on_slots_and_skips(
    settings: Settings, pool: Pool, producer: Producer, conn: Any
) -> None:
    """Liveness beats on time take the one-statement path; a late one goes through the planner,
    which records the slots it missed. Both write one job for the latest slot and advance the
    schedule by the interval from it."""
    user = make_user(conn)
    now = datetime.now(UTC).replace(microsecond=0)
    on_time = make_workflow(conn, user, interval=3, next_run_at=now - timedelta(seconds=20))
    late = make_workflow(conn, user, interval=3, next_run_at=now - timedelta(minutes=7))
    assert Scheduler(settings, pool, producer).schedule_due() == 2
    for workflow_id, slot, missed in (
        (on_time, now - timedelta(seconds=20), 0),
        (late, now - timedelta(minutes=1), 2),
    ):
        [job] = jobs_of(conn, workflow_id)
        assert (job["status"], job["scheduled_at"]) == ("QUEUED", slot)
        row = conn.execute("SELECT next_run_at FROM workflows WHERE id = %s", (workflow_id,))
        assert row.fetchone()["next_run_at"] == slot + timedelta(minutes=3)
        skips = conn.execute(
            "SELECT slots FROM skipped_runs WHERE workflow_id = %s", (workflow_id,)
        ).fetchall()
        assert [s["slots"] for s in skips] == ([missed] if missed else [])
    assert len(read_topic(settings, Topic.JOBS, 2)) == 2


def test_workflows_outside_the_one_statement_path_are_not_starved_by_it(
    settings: Settings, pool: Pool, producer: Producer, conn: Any
) -> None:
    user = make_user(conn)
    beats = [make_workflow(conn, user) for _ in range(4)]
    endpoint = make_workflow(
        conn,
        user,
        payload={"endpoint": "http://127.0.0.1:9/"},
        next_run_at=datetime.now(UTC) - timedelta(seconds=30),
    )
    small = Settings.model_validate({**settings.model_dump(), "schedule_batch_size": 2})
    # The one-statement path fills its batch with two beats; the planner still gets its pass
    # and claims the oldest due workflows: the endpoint check, then a third beat.
    assert Scheduler(small, pool, producer).schedule_due() == 4
    assert [j["status"] for j in jobs_of(conn, endpoint)] == ["QUEUED"]
    assert sum(len(jobs_of(conn, w)) for w in beats) == 3


def test_while_the_broker_refuses_messages_schedules_still_advance_with_jobs_pending(
    settings: Settings, pool: Pool, producer: Producer, conn: Any
) -> None:
    user = make_user(conn)
    first = make_workflow(conn, user)
    dead = Settings.model_validate(
        {**settings.model_dump(), "kafka_bootstrap_servers": "127.0.0.1:1"}
    )
    unreachable = Producer(dead, client_id="dead", delivery_timeout_s=1)
    try:
        scheduler = Scheduler(settings, pool, unreachable)
        with pytest.raises(PublishError):
            scheduler.schedule_due()  # committed QUEUED, its message kept
        second = make_workflow(conn, user)
        # The kept message still cannot go: the pass goes on, writing the new job PENDING.
        assert scheduler.schedule_due() == 1
    finally:
        unreachable.close()
    assert [j["status"] for j in jobs_of(conn, first)] == ["QUEUED"]
    assert [j["status"] for j in jobs_of(conn, second)] == ["PENDING"]
    row = conn.execute(
        "SELECT next_run_at > now() AS later FROM workflows WHERE id = %s", (second,)
    )
    assert row.fetchone()["later"]  # its schedule advanced
    # The broker is back: the dispatcher sends the PENDING one.
    assert Scheduler(settings, pool, producer).dispatch_pending() == 1


def test_two_lanes_at_once_never_take_a_user_past_the_active_jobs_quota(
    settings: Settings, pool: Pool, producer: Producer, conn: Any
) -> None:
    tight = Settings.model_validate(
        {
            **settings.model_dump(),
            "max_active_jobs_per_user": 5,
            "schedule_lanes": 2,
            "schedule_batch_size": 3,
        }
    )
    scheduler = Scheduler(tight, pool, producer)
    for _ in range(5):  # interleavings differ from round to round
        user = make_user(conn)
        workflows = [make_workflow(conn, user) for _ in range(12)]
        barrier = threading.Barrier(2)

        def lane(barrier: threading.Barrier) -> None:
            barrier.wait()
            while scheduler.schedule_due():
                pass

        lanes = [threading.Thread(target=lane, args=(barrier,)) for _ in range(2)]
        for thread in lanes:
            thread.start()
        for thread in lanes:
            thread.join(timeout=60)
        while scheduler.schedule_due():  # what a lane left due (its user held by the other)
            pass
        active = conn.execute(
            "SELECT count(*) AS n FROM jobs WHERE user_id = %s AND status IN ('PENDING', 'QUEUED')",
            (user,),
        ).fetchone()["n"]
        assert active == 5
        quota_skips = conn.execute(
            "SELECT coalesce(sum(s.slots), 0) AS n FROM skipped_runs AS s "
            "JOIN workflows AS w ON w.id = s.workflow_id "
            "WHERE s.reason = 'QUOTA' AND w.user_id = %s",
            (user,),
        ).fetchone()["n"]
        assert active + quota_skips == len(workflows)  # every slot accounted for once
