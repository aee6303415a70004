"""Cron schedules, pause, resume, catch-up and the fire ledger, through the real scheduler and
real Postgres, with the clock driven by the test (never by sleeping for minutes)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from chronoverse import lifecycle
from chronoverse.kafka.admin import delete_topics, ensure_topics
from chronoverse.kafka.producer import Producer
from chronoverse.postgres import Conn, Pool, create_pool
from services.execution_worker import store as execution_store
from services.scheduling_worker.scheduler import Scheduler
from services.scheduling_worker.settings import Settings
from services.server.store import schedules
from tests.factories import make_user, make_workflow

pytestmark = pytest.mark.integration

T0 = datetime(2027, 1, 4, 12, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


@pytest.fixture
def settings(environ: Mapping[str, str], database_url: str) -> Iterator[Settings]:
    settings = Settings.from_environ(
        {
            **environ,
            "CHRONOVERSE_DATABASE_URL": database_url,
            "CHRONOVERSE_KAFKA_TOPIC_PREFIX": f"t{uuid.uuid4().hex[:8]}.",
        }
    )
    ensure_topics(settings, settings.all_topics())
    yield settings
    delete_topics(settings, settings.all_topics())


@pytest.fixture
def conn(settings: Settings) -> Iterator[Conn]:
    with psycopg.connect(settings.database_url, autocommit=True, row_factory=dict_row) as conn:
        yield conn


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def scheduler(settings: Settings, clock: Clock) -> Iterator[Scheduler]:
    pool: Pool = create_pool(settings, name="test-schedules")
    producer = Producer(settings, client_id="test-schedules")
    yield Scheduler(settings, pool, producer, clock=clock)
    producer.close()
    pool.close()


def ledger(conn: Conn, user_id: uuid.UUID, workflow_id: uuid.UUID) -> list[tuple[Any, ...]]:
    """The whole fire ledger, oldest first, as (outcome, first slot, last slot, slots)."""
    entries: list[schedules.FireEntry] = []
    cursor = None
    while True:  # two at a time, so the cursor is exercised too
        page = schedules.list_fires(conn, user_id, workflow_id, limit=2, cursor=cursor)
        entries += page.fires
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    return [(e.outcome, e.first_scheduled_at, e.scheduled_at, e.slots) for e in reversed(entries)]


def test_pause_then_resume_runs_the_latest_paused_slot_and_ledgers_the_rest(
    conn: Conn, scheduler: Scheduler, clock: Clock
) -> None:
    user = make_user(conn)
    workflow = make_workflow(conn, user, interval=1, next_run_at=T0)
    assert scheduler.schedule_due() == 1  # T0 fires
    conn.execute("UPDATE jobs SET status = 'COMPLETED' WHERE workflow_id = %s", (workflow,))
    schedules.pause(conn, user, workflow)
    clock.now = T0 + 5 * MINUTE + timedelta(seconds=10)
    assert scheduler.schedule_due() == 0  # paused: nothing is claimed
    resumed = schedules.resume(conn, user, workflow, now=clock.now)
    assert resumed.paused_at is None
    assert resumed.next_run_at == T0 + 6 * MINUTE
    assert ledger(conn, user, workflow) == [
        ("FIRED", T0, T0, 1),
        ("PAUSED", T0 + MINUTE, T0 + 4 * MINUTE, 4),
        ("FIRED", T0 + 5 * MINUTE, T0 + 5 * MINUTE, 1),
    ]


@pytest.mark.parametrize(
    ("catchup", "window", "fired"),
    [
        ("latest", None, [T0 + 10 * MINUTE]),
        ("none", None, []),  # the latest slot is 2.5 minutes late: more than a scheduler pass
        ("all", 8, [T0 + 5 * MINUTE, T0 + 10 * MINUTE]),
    ],
)
def test_resume_follows_the_catchup_policy(
    conn: Conn, catchup: str, window: int | None, fired: list[datetime]
) -> None:
    user = make_user(conn)
    workflow = make_workflow(conn, user, interval=5, next_run_at=T0)
    conn.execute(
        "UPDATE workflows SET catchup = %s, catchup_window_minutes = %s, paused_at = %s "
        "WHERE id = %s",
        (catchup, window, T0, workflow),
    )
    schedules.resume(conn, user, workflow, now=T0 + 12 * MINUTE + timedelta(seconds=30))
    entries = ledger(conn, user, workflow)
    assert [e[1] for e in entries if e[0] == "FIRED"] == fired
    paused = [e for e in entries if e[0] == "PAUSED"]
    assert sum(e[3] for e in paused) + len(fired) == 3  # T0, +5, +10: each slot exactly once


def test_terminating_a_paused_workflow_ledgers_its_paused_slots(conn: Conn) -> None:
    user = make_user(conn)
    workflow = make_workflow(conn, user, interval=10, next_run_at="now()")
    conn.execute(
        "UPDATE workflows SET paused_at = now(), next_run_at = now() - interval '25 minutes' "
        "WHERE id = %s",
        (workflow,),
    )
    with conn.transaction():
        assert lifecycle.terminate(conn, workflow, reason="done", user_id=user) is not None
    [(outcome, _first, _last, slots)] = ledger(conn, user, workflow)
    assert (outcome, slots) == ("PAUSED", 3)


def test_a_cron_workflow_fires_in_local_time_across_the_spring_change(
    conn: Conn, scheduler: Scheduler, clock: Clock
) -> None:
    user = make_user(conn)
    workflow = make_workflow(conn, user, next_run_at=datetime(2027, 3, 27, 1, tzinfo=UTC))
    conn.execute(
        "UPDATE workflows SET interval_minutes = NULL, cron = '0 3 * * *', "
        "timezone = 'Europe/Riga', dst_gap = %s WHERE id = %s",
        ("shift", workflow),
    )
    for day in (27, 28, 29):
        clock.now = datetime(2027, 3, day, 1, 0, 5, tzinfo=UTC)
        scheduler.schedule_due()
        conn.execute("UPDATE jobs SET status = 'COMPLETED' WHERE workflow_id = %s", (workflow,))
    fired = [e[1] for e in ledger(conn, user, workflow) if e[0] == "FIRED"]
    # 03:00 EET is 01:00Z; on the 28th 03:00 does not exist and runs at 04:00 EEST (01:00Z);
    # on the 29th 03:00 EEST is 00:00Z, so that pass at 01:00:05Z is an hour late and runs it.
    assert fired == [
        datetime(2027, 3, 27, 1, tzinfo=UTC),
        datetime(2027, 3, 28, 1, tzinfo=UTC),
        datetime(2027, 3, 29, 0, tzinfo=UTC),
    ]


def test_a_cron_workflow_with_gap_skip_does_not_run_on_the_change(
    conn: Conn, scheduler: Scheduler, clock: Clock
) -> None:
    user = make_user(conn)
    workflow = make_workflow(conn, user, next_run_at=datetime(2027, 3, 27, 1, tzinfo=UTC))
    conn.execute(
        "UPDATE workflows SET interval_minutes = NULL, cron = '0 3 * * *', "
        "timezone = 'Europe/Riga', dst_gap = 'skip' WHERE id = %s",
        (workflow,),
    )
    clock.now = datetime(2027, 3, 27, 1, 0, 5, tzinfo=UTC)
    scheduler.schedule_due()
    row = conn.execute("SELECT next_run_at FROM workflows WHERE id = %s", (workflow,)).fetchone()
    assert row is not None
    assert row["next_run_at"] == datetime(2027, 3, 29, 0, tzinfo=UTC)


def test_a_paused_workflow_counts_no_failures(conn: Conn) -> None:
    user = make_user(conn)
    workflow = make_workflow(conn, user, max_failures=1)
    queries = execution_store.QUERIES
    counted = conn.execute(queries.count_failure, {"workflow_id": workflow}).fetchone()
    assert counted is not None  # active: counted
    conn.execute(
        "UPDATE workflows SET paused_at = now(), consecutive_job_failures_count = 0 WHERE id = %s",
        (workflow,),
    )
    assert conn.execute(queries.count_failure, {"workflow_id": workflow}).fetchone() is None
