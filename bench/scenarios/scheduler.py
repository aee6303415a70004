"""Scenario 1: scheduler throughput.

20,000 HEARTBEAT workflows are inserted straight into Postgres, due now and built, with the NOTIFY
a completed build sends. Only scheduling workers run. Measured: from that commit until every job is
committed and its message acknowledged by the broker (the job is QUEUED), in jobs/s. First with one
scheduling worker (the headline number), then with two side by side (`SKIP LOCKED` shares the
work), to show how it scales out.
"""

from __future__ import annotations

import time
import uuid

from bench.context import BenchContext
from bench.database import (
    QUERIES,
    connect,
    create_user,
    flag,
    published_count,
    seed_due_heartbeats,
)
from bench.environment import BenchError
from bench.measure import wait_for
from bench.results import Compare, Metric, ScenarioResult, Target
from chronoverse.postgres import Conn

NAME = "scheduler"
WORKFLOWS = 20_000
REPEATS = 5
UNCAPPED = {"CHRONOVERSE_DISPATCH_MAX_IN_FLIGHT_PER_USER": "1000000"}


def run(ctx: BenchContext) -> ScenarioResult:
    count = ctx.scaled(WORKFLOWS)
    repeats = ctx.repeats(REPEATS)
    # No execution worker runs here, so nothing finishes: the per-user cap on jobs in flight
    # would hold all but its first 1,000 of this one user's jobs PENDING. The scenario measures
    # how fast the scheduler can publish, so it lifts the cap.
    stack, database_url = ctx.new_stack(NAME, overrides=UNCAPPED)
    one: list[float] = []
    mixed: list[float] = []
    two: list[float] = []
    with stack, connect(database_url) as conn:
        user_id = create_user(conn)
        stack.start("scheduling-worker-1", "scheduling-worker")
        for repeat in range(repeats):
            one.append(_measure(conn, user_id, count))
            ctx.progress(f"{NAME} 1 worker, {repeat + 1}/{repeats}: {one[-1]:,.0f} jobs/s")
        for repeat in range(repeats):
            mixed.append(_measure(conn, user_id, count, mixed=True))
            ctx.progress(
                f"{NAME} 1 worker, cron and interval, {repeat + 1}/{repeats}: "
                f"{mixed[-1]:,.0f} jobs/s"
            )
        stack.start("scheduling-worker-2", "scheduling-worker")
        for repeat in range(repeats):
            two.append(_measure(conn, user_id, count))
            ctx.progress(f"{NAME} 2 workers, {repeat + 1}/{repeats}: {two[-1]:,.0f} jobs/s")
    target = Target(compare=Compare.AT_LEAST, value=20_000)
    return ScenarioResult(
        name=NAME,
        title="Scheduler throughput",
        setup=(
            f"{count:,} HEARTBEAT workflows inserted due and built in one transaction that also "
            "sends the scheduler's NOTIFY. Scheduling workers with default settings (1000 "
            "workflows per scheduling transaction, 2000 jobs per dispatch); no execution worker. "
            "Time from that commit until no workflow is due and no job is PENDING: every job "
            "committed, published, acknowledged by the broker and marked QUEUED. "
            f"{repeats} repeats with one scheduling worker, {repeats} more with half of the "
            "workflows on cron schedules (a fixed time, a weekday step, a macro, in UTC, "
            f"Europe/Riga, America/New_York and Asia/Kolkata), then {repeats} with two workers."
        ),
        config={
            "workflows": count,
            "repeats": repeats,
            "dispatch_max_in_flight_per_user": int(
                UNCAPPED["CHRONOVERSE_DISPATCH_MAX_IN_FLIGHT_PER_USER"]
            ),
            "scheduling_workers": [1, 2],
            "mixed": "half cron",
        },
        metrics=[
            Metric(
                scenario=NAME,
                name="jobs committed and published (1 scheduling worker)",
                unit="jobs/s",
                samples=tuple(one),
                target=target,
            ),
            Metric(
                scenario=NAME,
                name="half on cron schedules in 4 zones (1 scheduling worker)",
                unit="jobs/s",
                samples=tuple(mixed),
                target=target,
            ),
            Metric(
                scenario=NAME,
                name="the same, 2 scheduling workers",
                unit="jobs/s",
                samples=tuple(two),
                target=target,
            ),
        ],
    )


def _measure(conn: Conn, user_id: uuid.UUID, count: int, *, mixed: bool = False) -> float:
    """One repeat: seed, wait until every job is published; jobs per second."""
    conn.execute(QUERIES.reset)
    seed_due_heartbeats(conn, user_id, count, mixed=mixed)
    started = time.monotonic()
    wait_for(
        lambda: flag(conn, QUERIES.all_published),
        timeout_s=300,
        interval_s=0.01,
        what=f"{count} jobs to be published",
    )
    elapsed = time.monotonic() - started
    published = published_count(conn)
    if published != count:
        raise BenchError(f"expected {count} published jobs, found {published}")
    return count / elapsed
