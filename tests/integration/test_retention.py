"""Retention against real Postgres: old finished jobs go with their log lines and history, recent
and active ones stay, each workflow keeps its newest N, skipped-slot entries likewise, and every
statement deletes a bounded batch."""

from __future__ import annotations

import math
import threading
import uuid
from collections.abc import Iterator, Mapping
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from chronoverse.postgres import Pool, create_pool
from services.scheduling_worker.retention import Retention, RetentionPolicy
from services.scheduling_worker.settings import Settings
from tests.factories import make_user, make_workflow

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(environ: Mapping[str, str], database_url: str) -> Settings:
    return Settings.from_environ({**environ, "CHRONOVERSE_DATABASE_URL": database_url})


@pytest.fixture
def pool(settings: Settings) -> Iterator[Pool]:
    pool = create_pool(settings, name="test-retention")
    yield pool
    pool.close()


@pytest.fixture
def conn(settings: Settings) -> Iterator[psycopg.Connection[dict[str, Any]]]:
    with psycopg.connect(settings.database_url, autocommit=True, row_factory=dict_row) as conn:
        yield conn


def policy(**overrides: Any) -> RetentionPolicy:
    values: dict[str, Any] = {
        "job_age": timedelta(days=30),
        "jobs_per_workflow": 1000,
        "skip_age": timedelta(days=30),
        "skips_per_workflow": 1000,
        "batch_size": 500,
        "workflows_per_batch": 200,
        **overrides,
    }
    return RetentionPolicy(**values)


def add_jobs(
    conn: psycopg.Connection[Any],
    workflow_id: uuid.UUID,
    user_id: uuid.UUID,
    *,
    count: int,
    status: str,
    age: str,
    lines: int = 0,
) -> list[uuid.UUID]:
    """``count`` MANUAL jobs created ``age`` ago (spaced a second apart), with log lines."""
    finished = status in ("COMPLETED", "FAILED", "CANCELED")
    rows = conn.execute(
        "INSERT INTO jobs (workflow_id, user_id, trigger, scheduled_at, status, created_at, "
        "finished_at) "
        "SELECT %(w)s, %(u)s, 'MANUAL', t, %(status)s, t, CASE WHEN %(finished)s THEN t END "
        "FROM (SELECT now() - %(age)s::interval + n * interval '1 second' AS t "
        "      FROM generate_series(1, %(count)s) AS n) AS s RETURNING id",
        {
            "w": workflow_id,
            "u": user_id,
            "status": status,
            "finished": finished,
            "age": age,
            "count": count,
        },
    ).fetchall()
    ids = [row["id"] for row in rows]
    if lines:
        conn.execute(
            "INSERT INTO job_logs (job_id, seq, stream, ts, line) "
            "SELECT j, s, 'stdout', now(), 'x' FROM unnest(%s::uuid[]) AS j, "
            "generate_series(0, %s - 1) AS s",
            (ids, lines),
        )
    return ids


def count(conn: psycopg.Connection[Any], query: str, *params: Any) -> int:
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return int(row["n"])


def surviving(conn: psycopg.Connection[Any], ids: list[uuid.UUID]) -> int:
    return count(conn, "SELECT count(*) AS n FROM jobs WHERE id = ANY(%s)", ids)


def test_old_finished_jobs_go_with_their_logs_and_history(pool: Pool, conn: Any) -> None:
    user = make_user(conn)
    workflow = make_workflow(conn, user, next_run_at="infinity")
    old_done = add_jobs(conn, workflow, user, count=4, status="COMPLETED", age="40 days", lines=5)
    old_failed = add_jobs(conn, workflow, user, count=2, status="FAILED", age="31 days", lines=5)
    old_canceled = add_jobs(conn, workflow, user, count=2, status="CANCELED", age="35 days")
    old_active = [
        *add_jobs(conn, workflow, user, count=1, status="PENDING", age="60 days"),
        *add_jobs(conn, workflow, user, count=1, status="QUEUED", age="60 days"),
        *add_jobs(conn, workflow, user, count=1, status="RUNNING", age="60 days"),
    ]
    recent = add_jobs(conn, workflow, user, count=3, status="COMPLETED", age="2 days", lines=5)
    doomed = old_done + old_failed + old_canceled
    assert count(conn, "SELECT count(*) AS n FROM job_events WHERE job_id = ANY(%s)", doomed) > 0

    result = Retention(pool, policy()).prune_pass()

    assert result.jobs == len(doomed)
    assert surviving(conn, doomed) == 0
    assert surviving(conn, old_active) == 3  # never an active job, however old
    assert surviving(conn, recent) == 3
    assert count(conn, "SELECT count(*) AS n FROM job_logs WHERE job_id = ANY(%s)", doomed) == 0
    assert count(conn, "SELECT count(*) AS n FROM job_events WHERE job_id = ANY(%s)", doomed) == 0
    assert count(conn, "SELECT count(*) AS n FROM job_logs WHERE job_id = ANY(%s)", recent) == 15
    # A second pass finds nothing more.
    assert Retention(pool, policy()).prune_pass().jobs == 0


def test_each_workflow_keeps_its_newest_jobs(pool: Pool, conn: Any) -> None:
    user = make_user(conn)
    busy = make_workflow(conn, user, next_run_at="infinity")
    quiet = make_workflow(conn, user, next_run_at="infinity")
    oldest = add_jobs(conn, busy, user, count=6, status="COMPLETED", age="3 days")
    active = add_jobs(conn, busy, user, count=1, status="PENDING", age="2 days")
    newest = add_jobs(conn, busy, user, count=9, status="FAILED", age="1 day")
    few = add_jobs(conn, quiet, user, count=5, status="COMPLETED", age="3 days")

    result = Retention(pool, policy(jobs_per_workflow=10)).prune_pass()

    # The busy workflow keeps its newest 10 (9 finished, 1 active); the 6 before them go.
    assert result.jobs == 6
    assert surviving(conn, oldest) == 0
    assert surviving(conn, active + newest) == 10
    assert surviving(conn, few) == 5


def test_an_active_job_past_the_count_is_kept(pool: Pool, conn: Any) -> None:
    user = make_user(conn)
    workflow = make_workflow(conn, user, next_run_at="infinity")
    active = add_jobs(conn, workflow, user, count=2, status="RUNNING", age="3 days")
    newest = add_jobs(conn, workflow, user, count=3, status="COMPLETED", age="1 day")

    assert Retention(pool, policy(jobs_per_workflow=1)).prune_pass().jobs == 2
    assert surviving(conn, active) == 2
    assert surviving(conn, newest) == 1


def test_skipped_slots_by_age_and_count(pool: Pool, conn: Any) -> None:
    user = make_user(conn)
    first = make_workflow(conn, user, next_run_at="infinity")
    second = make_workflow(conn, user, next_run_at="infinity")
    for workflow, ages in ((first, ["40 days", "31 days", "1 day"]), (second, ["1 hour"] * 8)):
        for age in ages:
            conn.execute(
                "INSERT INTO skipped_runs (workflow_id, reason, first_scheduled_at, "
                "last_scheduled_at, slots, created_at) "
                "VALUES (%s, 'OVERLAP', now(), now(), 1, now() - %s::interval)",
                (workflow, age),
            )

    result = Retention(pool, policy(skips_per_workflow=5)).prune_pass()

    assert result.skipped_runs == 2 + 3
    by_workflow = conn.execute(
        "SELECT workflow_id, count(*) AS n FROM skipped_runs GROUP BY workflow_id"
    ).fetchall()
    assert {row["workflow_id"]: row["n"] for row in by_workflow} == {first: 1, second: 5}


def test_deletes_in_bounded_batches_over_windows_of_workflows(pool: Pool, conn: Any) -> None:
    user = make_user(conn)
    for _ in range(7):
        workflow = make_workflow(conn, user, next_run_at="infinity")
        add_jobs(conn, workflow, user, count=5, status="COMPLETED", age="40 days")

    small = policy(batch_size=4, workflows_per_batch=3)
    result = Retention(pool, small, pause_s=0.001).prune_pass(threading.Event())

    assert result.jobs == 35
    assert count(conn, "SELECT count(*) AS n FROM jobs") == 0
    assert result.largest_batch == 4
    # Windows of 3, 3 and 1 workflows (15, 15 and 5 jobs), at most 4 jobs at a time: 4, 4 and
    # 2 rounds of three statements (their lines, their history, the jobs); one skipped-slot
    # statement per window; then one each for notifications and webhook deliveries.
    assert result.statements == (math.ceil(15 / 4) * 2 + math.ceil(5 / 4)) * 3 + 3 + 2


def test_a_job_with_more_lines_than_a_batch_goes_in_bounded_statements(
    pool: Pool, conn: Any
) -> None:
    user = make_user(conn)
    workflow = make_workflow(conn, user, next_run_at="infinity")
    doomed = add_jobs(conn, workflow, user, count=2, status="COMPLETED", age="40 days", lines=250)
    active = add_jobs(conn, workflow, user, count=1, status="RUNNING", age="60 days", lines=70)

    result = Retention(pool, policy(lines_batch_size=100)).prune_pass()

    # 500 lines, 100 a statement: never the 250 of a job in one cascading DELETE.
    assert (result.jobs, result.job_logs, result.job_events) == (2, 500, 2)
    assert result.largest_batch == 100
    assert surviving(conn, doomed) == 0
    assert count(conn, "SELECT count(*) AS n FROM job_logs WHERE job_id = ANY(%s)", doomed) == 0
    # An active job keeps its lines and history, however old.
    assert surviving(conn, active) == 1
    assert count(conn, "SELECT count(*) AS n FROM job_logs WHERE job_id = ANY(%s)", active) == 70
    assert count(conn, "SELECT count(*) AS n FROM job_events WHERE job_id = ANY(%s)", active) == 1


def test_old_notifications_and_finished_webhook_deliveries_go_by_age(
    pool: Pool, conn: psycopg.Connection[dict[str, Any]]
) -> None:
    user = make_user(conn)
    workflow = make_workflow(conn, user)
    for age, read in (("40 days", True), ("40 days", False), ("1 day", False)):
        conn.execute(
            "INSERT INTO notifications (user_id, kind, event, title, message, entity_type, "
            "entity_id, dedup_key, read_at, created_at) "
            "VALUES (%s, 'INFO', 'job.completed', 't', 'm', 'WORKFLOW', %s, %s, "
            "CASE WHEN %s THEN now() END, now() - %s::interval)",
            (user, workflow, uuid.uuid4().hex, read, age),
        )
    hook = conn.execute(
        "INSERT INTO webhooks (user_id, url, events, secret) "
        "VALUES (%s, 'https://example.com/hook', ARRAY['workflow.failing'], 'x') RETURNING id",
        (user,),
    ).fetchone()
    assert hook is not None
    for age, status in (("40 days", "DELIVERED"), ("40 days", "FAILED"), ("40 days", "PENDING"),
                        ("1 day", "DELIVERED")):  # fmt: skip
        conn.execute(
            "INSERT INTO webhook_deliveries (webhook_id, event, payload, dedup_key, status, "
            "created_at) VALUES (%s, 'workflow.failing', '{}', %s, %s, now() - %s::interval)",
            (hook["id"], uuid.uuid4().hex, status, age),
        )

    result = Retention(pool, policy(notification_age=timedelta(days=30))).prune_pass()

    assert (result.notifications, result.webhook_deliveries) == (2, 2)
    left = conn.execute("SELECT count(*) AS n FROM notifications").fetchone()
    assert left is not None and left["n"] == 1
    statuses = conn.execute("SELECT status FROM webhook_deliveries ORDER BY status").fetchall()
    # The recent delivery stays, and so does the old one still PENDING (it has not ended).
    assert [r["status"] for r in statuses] == ["DELIVERED", "PENDING"]
