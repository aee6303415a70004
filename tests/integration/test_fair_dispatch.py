"""Fair dispatch and the scheduler's side of the active-jobs quota, against real Postgres and the
real broker: one user's backlog does not hold back another user's job, a user has at most
CHRONOVERSE_DISPATCH_MAX_IN_FLIGHT_PER_USER jobs published and unfinished, and automatic slots
past CHRONOVERSE_MAX_ACTIVE_JOBS_PER_USER are QUOTA skips.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from typing import Any

import psycopg
import pytest
from prometheus_client import REGISTRY
from psycopg.rows import dict_row

from chronoverse.kafka.admin import delete_topics, ensure_topics
from chronoverse.kafka.producer import Producer
from chronoverse.postgres import Pool, create_pool
from services.scheduling_worker.scheduler import Scheduler
from services.scheduling_worker.settings import Settings
from tests.factories import make_user, make_workflow

pytestmark = pytest.mark.integration

BACKLOG = 2000


@pytest.fixture
def settings(
    environ: Mapping[str, str], database_url: str, kafka_settings: Any
) -> Iterator[Settings]:
    settings = Settings.from_environ(
        {
            **environ,
            "CHRONOVERSE_DATABASE_URL": database_url,
            "CHRONOVERSE_KAFKA_TOPIC_PREFIX": f"t{uuid.uuid4().hex[:8]}.",
            "CHRONOVERSE_DISPATCH_BATCH_SIZE": "100",
            "CHRONOVERSE_DISPATCH_MAX_IN_FLIGHT_PER_USER": "300",
        }
    )
    ensure_topics(settings, settings.all_topics(), partitions=2)
    yield settings
    delete_topics(settings, settings.all_topics())


@pytest.fixture
def pool(settings: Settings) -> Iterator[Pool]:
    pool = create_pool(settings, name="test-fair-dispatch")
    yield pool
    pool.close()


@pytest.fixture
def producer(settings: Settings) -> Iterator[Producer]:
    producer = Producer(settings, client_id="test-fair-dispatch")
    yield producer
    producer.close()


@pytest.fixture
def conn(settings: Settings) -> Iterator[psycopg.Connection[dict[str, Any]]]:
    with psycopg.connect(settings.database_url, autocommit=True, row_factory=dict_row) as conn:
        yield conn


CONTAINER = {"image": "local/busybox:latest", "command": ["true"]}


def backlog(
    conn: psycopg.Connection[Any], user_id: uuid.UUID, count: int, *, liveness: bool = False
) -> uuid.UUID:
    """``count`` ready MANUAL jobs of one workflow of the user, ready a minute ago: CONTAINER
    jobs (each takes an execution slot), or liveness HEARTBEATs (which take none)."""
    workflow_id = make_workflow(
        conn,
        user_id,
        kind="HEARTBEAT" if liveness else "CONTAINER",
        payload=None if liveness else CONTAINER,
        next_run_at="infinity",
    )
    conn.execute(
        "INSERT INTO jobs (workflow_id, user_id, trigger, scheduled_at, run_after) "
        "SELECT %s, %s, 'MANUAL', now() - interval '1 minute', "
        "now() - interval '1 minute' + n * interval '1 millisecond' "
        "FROM generate_series(1, %s) AS n",
        (workflow_id, user_id, count),
    )
    return workflow_id


def statuses(conn: psycopg.Connection[Any], user_id: uuid.UUID) -> dict[str, int]:
    rows = conn.execute(
        "SELECT status, count(*) AS n FROM jobs WHERE user_id = %s GROUP BY status", (user_id,)
    ).fetchall()
    return {row["status"]: row["n"] for row in rows}


def test_another_users_job_is_published_in_the_first_pass_despite_a_backlog(
    settings: Settings, pool: Pool, producer: Producer, conn: Any
) -> None:
    alice, bob = make_user(conn), make_user(conn)
    backlog(conn, alice, BACKLOG)
    bob_workflow = make_workflow(conn, bob, next_run_at="infinity")
    # Bob's job is the newest of all: a FIFO dispatch would publish it after Alice's 2,000.
    [bob_job] = conn.execute(
        "INSERT INTO jobs (workflow_id, user_id, trigger, scheduled_at) "
        "VALUES (%s, %s, 'MANUAL', now()) RETURNING id",
        (bob_workflow, bob),
    ).fetchall()
    scheduler = Scheduler(settings, pool, producer)

    assert scheduler.dispatch_pending() == 100
    row = conn.execute("SELECT status FROM jobs WHERE id = %s", (bob_job["id"],)).fetchone()
    assert row["status"] == "QUEUED"
    # The first pass took Alice's oldest ready jobs for the rest of the batch.
    assert statuses(conn, alice) == {"QUEUED": 99, "PENDING": BACKLOG - 99}


def test_a_user_has_at_most_the_in_flight_cap_published_and_unfinished(
    settings: Settings, pool: Pool, producer: Producer, conn: Any
) -> None:
    alice, bob = make_user(conn), make_user(conn)
    backlog(conn, alice, BACKLOG)
    scheduler = Scheduler(settings, pool, producer)
    while scheduler.dispatch_pending():
        pass
    assert statuses(conn, alice) == {"QUEUED": 300, "PENDING": BACKLOG - 300}
    # Alice at her cap does not hold Bob back.
    backlog(conn, bob, 5)
    assert scheduler.dispatch_pending() == 5
    assert statuses(conn, bob) == {"QUEUED": 5}
    # As Alice's jobs finish (RUNNING ones count too), as many more of hers are published.
    conn.execute(
        "UPDATE jobs SET status = 'COMPLETED', finished_at = now() WHERE id IN "
        "(SELECT id FROM jobs WHERE user_id = %s AND status = 'QUEUED' LIMIT 40)",
        (alice,),
    )
    conn.execute(
        "UPDATE jobs SET status = 'RUNNING' WHERE id IN "
        "(SELECT id FROM jobs WHERE user_id = %s AND status = 'QUEUED' LIMIT 60)",
        (alice,),
    )
    assert scheduler.dispatch_pending() == 40
    assert statuses(conn, alice) == {
        "COMPLETED": 40,
        "RUNNING": 60,
        "QUEUED": 240,  # 300 in flight again
        "PENDING": BACKLOG - 340,
    }
    assert scheduler.dispatch_pending() == 0
    # Nothing was published twice.
    row = conn.execute("SELECT max(publish_count) AS most FROM jobs").fetchone()
    assert row["most"] == 1


def test_at_the_defaults_the_cap_binds_below_the_active_jobs_quota(
    environ: Mapping[str, str], settings: Settings, pool: Pool, producer: Producer, conn: Any
) -> None:
    defaults = Settings.from_environ(
        {
            **environ,
            "CHRONOVERSE_DATABASE_URL": settings.database_url,
            "CHRONOVERSE_KAFKA_TOPIC_PREFIX": settings.kafka_topic_prefix,
        }
    )
    cap, quota = defaults.dispatch_max_in_flight_per_user, defaults.max_active_jobs_per_user
    alice, bob = make_user(conn), make_user(conn)
    backlog(conn, alice, quota)  # as many active jobs as the quota lets her have
    scheduler = Scheduler(defaults, pool, producer)
    while scheduler.dispatch_pending():
        pass
    # Most of Alice's backlog waits PENDING rather than in the topic ahead of Bob's next job.
    assert statuses(conn, alice) == {"QUEUED": cap, "PENDING": quota - cap}
    assert cap <= quota // 4
    backlog(conn, bob, 1)
    assert scheduler.dispatch_pending() == 1
    assert statuses(conn, bob) == {"QUEUED": 1}


def claims() -> float:
    return REGISTRY.get_sample_value("chronoverse_dispatch_claims_total") or 0.0


def test_while_held_back_dispatch_claims_again_only_once_a_refill_finished(
    settings: Settings, pool: Pool, producer: Producer, conn: Any
) -> None:
    now = [0.0]
    scheduler = Scheduler(settings, pool, producer, monotonic=lambda: now[0])
    alice = make_user(conn)
    backlog(conn, alice, 1000)
    while scheduler.dispatch_pending():
        pass
    assert statuses(conn, alice)["QUEUED"] == 300

    def finish(n: int) -> None:
        conn.execute(
            "UPDATE jobs SET status = 'COMPLETED', finished_at = now() WHERE id IN "
            "(SELECT id FROM jobs WHERE user_id = %s AND status = 'QUEUED' LIMIT %s)",
            (alice, n),
        )

    # Nothing of hers finished: passes only count her jobs in flight, they claim nothing (the
    # claim numbers every ready job).
    before = claims()
    for _ in range(5):
        scheduler.run_once()
    finish(300 // 4 - 1)
    scheduler.run_once()
    assert claims() == before
    assert statuses(conn, alice)["QUEUED"] == 300 - 74
    # A quarter of the cap finished: the next pass claims, and publishes as many.
    finish(1)
    scheduler.run_once()
    assert claims() == before + 1
    assert statuses(conn, alice)["QUEUED"] == 300
    # And whatever the count says, it claims again after CHRONOVERSE_DISPATCH_RECHECK_S.
    scheduler.run_once()
    assert claims() == before + 1
    now[0] += settings.dispatch_recheck_s
    scheduler.run_once()
    assert claims() == before + 2


def test_dispatch_takes_users_round_robin(
    settings: Settings, pool: Pool, producer: Producer, conn: Any
) -> None:
    users = [make_user(conn) for _ in range(3)]
    for count, user_id in zip((500, 20, 3), users, strict=True):
        backlog(conn, user_id, count)
    small = Settings.model_validate({**settings.model_dump(), "dispatch_batch_size": 30})
    assert Scheduler(small, pool, producer).dispatch_pending() == 30
    # Each user's n-th job before anyone's (n+1)-th: turns 1 to 3 take one job of each user
    # (9), turns 4 to 13 one of each of the two others (20), and turn 14 the oldest of those.
    queued = [statuses(conn, u).get("QUEUED", 0) for u in users]
    assert queued == [14, 13, 3]


def test_automatic_slots_past_the_active_jobs_quota_are_quota_skips(
    settings: Settings, pool: Pool, producer: Producer, conn: Any
) -> None:
    alice, bob = make_user(conn), make_user(conn)
    backlog(conn, alice, 2)  # two active jobs already
    due = [make_workflow(conn, alice) for _ in range(3)]
    bobs = make_workflow(conn, bob)
    capped = Settings.model_validate({**settings.model_dump(), "max_active_jobs_per_user": 3})
    Scheduler(capped, pool, producer).schedule_due()

    rows = conn.execute(
        "SELECT workflow_id FROM jobs WHERE trigger = 'AUTOMATIC' AND user_id = %s", (alice,)
    ).fetchall()
    assert len(rows) == 1  # room for one more job only
    skips = conn.execute(
        "SELECT workflow_id, reason, slots, detail FROM skipped_runs ORDER BY id"
    ).fetchall()
    assert [s["reason"] for s in skips] == ["QUOTA", "QUOTA"]
    assert {s["workflow_id"] for s in skips} | {rows[0]["workflow_id"]} == set(due)
    assert "CHRONOVERSE_MAX_ACTIVE_JOBS_PER_USER=3" in skips[0]["detail"]
    # Every schedule moved on, and Bob is not affected by Alice's quota.
    assert conn.execute(
        "SELECT count(*) AS n FROM workflows WHERE next_run_at <= now()"
    ).fetchone() == {"n": 0}
    assert statuses(conn, bob) == {"QUEUED": 1}  # written once: published at once
    assert conn.execute(
        "SELECT count(*) AS n FROM jobs WHERE workflow_id = %s", (bobs,)
    ).fetchone() == {"n": 1}


def test_new_jobs_wait_pending_when_their_owner_is_at_the_cap_or_has_jobs_waiting(
    settings: Settings, pool: Pool, producer: Producer, conn: Any
) -> None:
    """The scheduler writes a job QUEUED and publishes it at once only when it may run now:
    a job that takes a slot waits PENDING (for the dispatcher's round-robin) while its owner is
    at the in-flight cap, or behind the owner's jobs already waiting; liveness beats never wait."""
    capped = Settings.model_validate(
        {**settings.model_dump(), "dispatch_max_in_flight_per_user": 3}
    )
    alice, bob, carol = make_user(conn), make_user(conn), make_user(conn)
    backlog(conn, alice, 3)
    assert Scheduler(capped, pool, producer).dispatch_pending() == 3  # alice is at the cap
    backlog(conn, carol, 1)  # carol is under it, but a job of hers already waits
    alices = [make_workflow(conn, alice, kind="CONTAINER", payload=CONTAINER) for _ in range(2)]
    alice_beat = make_workflow(conn, alice)  # liveness
    bobs = [make_workflow(conn, bob, kind="CONTAINER", payload=CONTAINER) for _ in range(4)]
    carols = make_workflow(conn, carol, kind="CONTAINER", payload=CONTAINER)

    assert Scheduler(capped, pool, producer).schedule_due() == 8
    status = {
        row["workflow_id"]: row["status"]
        for row in conn.execute(
            "SELECT workflow_id, status FROM jobs WHERE trigger = 'AUTOMATIC'"
        ).fetchall()
    }
    assert [status[w] for w in alices] == ["PENDING", "PENDING"]
    assert status[alice_beat] == "QUEUED"
    # Bob had room for 3: his first three (in slot order) went out, the fourth waits.
    assert sorted(status[w] for w in bobs) == ["PENDING", "QUEUED", "QUEUED", "QUEUED"]
    assert status[carols] == "PENDING"


def test_liveness_beats_take_no_slot_and_are_never_held_back(
    settings: Settings, pool: Pool, producer: Producer, conn: psycopg.Connection[Any]
) -> None:
    # Liveness HEARTBEATs run nothing (claimed by the hundred, done in milliseconds): the cap,
    # which shares execution slots, neither counts them nor holds them back.
    user = make_user(conn)
    backlog(conn, user, 700, liveness=True)
    backlog(conn, user, 50)  # and a few that do take a slot
    scheduler = Scheduler(settings, pool, producer)
    while scheduler.dispatch_pending():
        pass
    counts = {
        (row["liveness"], row["status"]): row["n"]
        for row in conn.execute(
            "SELECT chronoverse_is_liveness(w.kind, w.payload) AS liveness, j.status, "
            "count(*) AS n FROM jobs AS j JOIN workflows AS w ON w.id = j.workflow_id "
            "GROUP BY 1, 2"
        ).fetchall()
    }
    assert counts == {(True, "QUEUED"): 700, (False, "QUEUED"): 50}
