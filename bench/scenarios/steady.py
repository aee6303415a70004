"""Scenario: dispatch lag at a steady rate, below capacity.

10,000 liveness HEARTBEAT workflows (payload {}) run every minute, their slots spread evenly
across the minute (one every 6 ms: about 167 jobs/s), on a full stack of its own configured as
the shared one. The first slot is a few seconds after the seed's commit; the run lasts 3 minutes
(a scaled run ``max(60 s, 180 s x scale)``). Then: the lag of every job whose slot falls in the
run after the first 10 s of warm-up (``started_at - scheduled_at``), p50 and p99, and the
scheduler's share of it (``created_at - scheduled_at``); the jobs/s achieved; and the slots due
in the whole run against the jobs created for them, which must be equal (one job per nominal
slot).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from bench.context import BenchContext, FullStack
from bench.database import QUERIES, reset
from bench.environment import BenchError
from bench.measure import wait_for
from bench.results import Compare, Metric, ScenarioResult, Target
from chronoverse import lifecycle
from chronoverse.postgres import Conn

NAME = "steady"
WORKFLOWS = 10_000
REPEATS = 1  # a repeat takes the whole run
RUN_S = 180.0
MIN_RUN_S = 60.0  # a scaled run: max(MIN_RUN_S, RUN_S x scale)
LEAD_S = 5.0  # from the seed's commit to the first slot
WARM_UP_S = 10.0  # slots this close to the first are not measured
GRACE_S = 2.0  # after the last slot, before waiting for its job to finish
INTERVAL_US = 60_000_000  # interval_minutes = 1
LAG_FRACTIONS = (0.5, 0.99)


@dataclass(frozen=True, kw_only=True)
class Run:
    """One repeat's figures."""

    p50_s: float
    p99_s: float
    created_p50_s: float
    created_p99_s: float
    jobs_per_s: float
    slots_due: int
    jobs_created: int


def run(ctx: BenchContext) -> ScenarioResult:
    count = ctx.scaled(WORKFLOWS)
    repeats = ctx.repeats(REPEATS)
    run_s = max(MIN_RUN_S, RUN_S * ctx.options.scale)
    full = ctx.start_full_stack(NAME, execution_workers=ctx.options.execution_workers)
    runs: list[Run] = []
    try:
        for repeat in range(repeats):
            runs.append(run_once(full, count, run_s))
            last = runs[-1]
            ctx.progress(
                f"{NAME} {repeat + 1}/{repeats}: lag p50 {last.p50_s * 1000:,.0f} ms, p99 "
                f"{last.p99_s * 1000:,.0f} ms (created: p50 {last.created_p50_s * 1000:,.0f} ms, "
                f"p99 {last.created_p99_s * 1000:,.0f} ms), {last.jobs_per_s:,.0f} jobs/s, "
                f"{last.jobs_created:,} jobs for {last.slots_due:,} slots"
            )
    finally:
        full.conn.close()
        full.stack.stop_all()
    return ScenarioResult(
        name=NAME,
        title="Steady dispatch lag",
        setup=(
            f"{count:,} liveness HEARTBEAT workflows (payload {{}}) with an interval of 1 minute, "
            f"their first slots spread evenly over one minute from {LEAD_S:.0f} s after the "
            f"seed's commit, on a full stack of its own (see config), for {run_s:.0f} s. Lag: "
            "started_at - scheduled_at of every job whose slot falls in the run, except the "
            f"first {WARM_UP_S:.0f} s (warm-up). jobs/s: those jobs over that window. Every "
            f"slot due in the run must have its job. {repeats} repeat(s)."
        ),
        config={
            "workflows": count,
            "interval_minutes": 1,
            "run_s": run_s,
            "warm_up_s": WARM_UP_S,
            "repeats": repeats,
            **ctx.full_stack_config(),
        },
        metrics=[
            Metric(
                scenario=NAME,
                name="dispatch lag p50",
                unit="ms",
                samples=tuple(r.p50_s * 1000 for r in runs),
            ),
            Metric(
                scenario=NAME,
                name="dispatch lag p99",
                unit="ms",
                samples=tuple(r.p99_s * 1000 for r in runs),
                target=Target(compare=Compare.AT_MOST, value=250),
            ),
            Metric(
                scenario=NAME,
                name="slot to job created, p50",
                unit="ms",
                samples=tuple(r.created_p50_s * 1000 for r in runs),
            ),
            Metric(
                scenario=NAME,
                name="slot to job created, p99",
                unit="ms",
                samples=tuple(r.created_p99_s * 1000 for r in runs),
                note="created_at is the start of the scheduler's transaction that inserted the job",
            ),
            Metric(
                scenario=NAME,
                name="jobs run (steady rate)",
                unit="jobs/s",
                samples=tuple(r.jobs_per_s for r in runs),
            ),
            Metric(
                scenario=NAME,
                name="jobs created for the slots due",
                unit="jobs",
                samples=tuple(float(r.jobs_created) for r in runs),
                baseline_samples=tuple(float(r.slots_due) for r in runs),
                baseline_name="slots due",
            ),
        ],
    )


def slots_due(count: int, spacing_us: int, until_us: int) -> int:
    """Slots from the first to ``until_us`` (microseconds after it) of ``count`` workflows every
    minute whose first slots are ``spacing_us`` apart."""
    return sum(
        (until_us - offset) // INTERVAL_US + 1
        for offset in range(0, count * spacing_us, spacing_us)
        if offset <= until_us
    )


def run_once(full: FullStack, count: int, run_s: float) -> Run:
    conn = full.conn
    reset(conn)
    spacing_us = INTERVAL_US // count
    # No slot falls on the end itself: half a spacing before the last one that would.
    until_us = round(run_s * 1_000_000) - spacing_us // 2
    first = _seed(conn, full.user_id, count, spacing_us)
    until = first + timedelta(microseconds=until_us)
    since = first + timedelta(seconds=WARM_UP_S)
    deadline = time.monotonic() + run_s + LEAD_S + GRACE_S
    while time.monotonic() < deadline:
        full.stack.check_alive()
        time.sleep(min(5.0, max(0.0, deadline - time.monotonic())))
    wait_for(
        lambda: _settled(conn, until),
        timeout_s=120,
        interval_s=0.2,
        what=f"the jobs of every slot up to {until.isoformat()} to finish",
    )
    full.stack.check_alive()
    due = slots_due(count, spacing_us, until_us)
    everything = _jobs(conn, first, until)
    if everything.jobs != due:
        raise BenchError(f"{due:,} slots were due up to {until}; {everything.jobs:,} jobs exist")
    measured = _jobs(conn, since, until)
    if measured.completed != measured.jobs:
        raise BenchError(f"{measured.jobs - measured.completed} jobs did not complete")
    return Run(
        p50_s=measured.lags[0],
        p99_s=measured.lags[1],
        created_p50_s=measured.created_lags[0],
        created_p99_s=measured.created_lags[1],
        jobs_per_s=measured.jobs / (until - since).total_seconds(),
        slots_due=due,
        jobs_created=everything.jobs,
    )


def _seed(conn: Conn, user_id: uuid.UUID, count: int, spacing_us: int) -> datetime:
    """Insert the workflows; the first slot, ``LEAD_S`` after now."""
    with conn.transaction():
        row = conn.execute(QUERIES.clock).fetchone()
        assert row is not None
        first: datetime = row["now"] + timedelta(seconds=LEAD_S)
        conn.execute(
            QUERIES.insert_steady_heartbeats,
            {"user_id": user_id, "count": count, "first": first, "spacing_us": spacing_us},
        )
        lifecycle.wake_scheduler(conn)  # what a completed build does
    return first


def _settled(conn: Conn, until: datetime) -> bool:
    row = conn.execute(QUERIES.steady_settled, {"until": until}).fetchone()
    return bool(row and row["done"])


@dataclass(frozen=True, kw_only=True)
class _Jobs:
    jobs: int
    completed: int
    lags: tuple[float, ...]
    created_lags: tuple[float, ...]


def _jobs(conn: Conn, since: datetime, until: datetime) -> _Jobs:
    row = conn.execute(
        QUERIES.steady_jobs,
        {"since": since, "until": until, "fractions": list(LAG_FRACTIONS)},
    ).fetchone()
    assert row is not None
    unknown = (float("nan"),) * len(LAG_FRACTIONS)  # no job in the window
    return _Jobs(
        jobs=int(row["jobs"]),
        completed=int(row["completed"]),
        lags=tuple(float(lag) for lag in row["lags"] or unknown),
        created_lags=tuple(float(lag) for lag in row["created_lags"] or unknown),
    )
