"""Scenario 2: end-to-end HEARTBEAT throughput and dispatch lag.

10,000 liveness HEARTBEAT workflows (empty payload) are inserted due and built, with the
scheduler's NOTIFY, into the full stack's database. Measured: from that commit until every job is
COMPLETED, in jobs/s; and the dispatch lag of each job (its scheduled slot to its start, from the
jobs table), p50 and p99. The services' memory is sampled meanwhile for the footprint scenario.
"""

from __future__ import annotations

import time

from bench.context import BenchContext, FullStack
from bench.database import QUERIES, flag, job_counts, reset, seed_due_heartbeats
from bench.environment import BenchError
from bench.measure import RssSampler, wait_for
from bench.results import Compare, Metric, ScenarioResult, Target

NAME = "heartbeat"
WORKFLOWS = 10_000
REPEATS = 5
LAG_FRACTIONS = (0.5, 0.99)


def run(ctx: BenchContext) -> ScenarioResult:
    count = ctx.scaled(WORKFLOWS)
    repeats = ctx.repeats(REPEATS)
    full = ctx.full_stack()
    rates: list[float] = []
    p50s: list[float] = []
    p99s: list[float] = []
    for repeat in range(repeats):
        rate, (p50, p99) = run_once(ctx, full, count)
        rates.append(rate)
        p50s.append(p50 * 1000)
        p99s.append(p99 * 1000)
        ctx.progress(
            f"{NAME} {repeat + 1}/{repeats}: {rate:,.0f} jobs/s, dispatch lag "
            f"p50 {p50 * 1000:,.0f} ms, p99 {p99 * 1000:,.0f} ms"
        )
    reset(full.conn)  # the next scenarios start on small tables
    lag_note = (
        f"all {count:,} jobs are due at the same instant, so the lag of the last ones is the "
        "time to drain the backlog"
    )
    return ScenarioResult(
        name=NAME,
        title="End-to-end HEARTBEAT",
        setup=(
            f"{count:,} liveness HEARTBEAT workflows (payload {{}}) inserted due and built in one "
            "transaction with the scheduler's NOTIFY, into the full stack (see config). Time from "
            "that commit until every job is COMPLETED. Dispatch lag: started_at - scheduled_at "
            f"of every job, from the jobs table. {repeats} repeats."
        ),
        config={"workflows": count, "repeats": repeats, **ctx.full_stack_config()},
        metrics=[
            Metric(
                scenario=NAME,
                name="jobs run to COMPLETED",
                unit="jobs/s",
                samples=tuple(rates),
                target=Target(compare=Compare.AT_LEAST, value=3000),
            ),
            Metric(scenario=NAME, name="dispatch lag p50", unit="ms", samples=tuple(p50s)),
            Metric(
                scenario=NAME,
                name="dispatch lag p99",
                unit="ms",
                samples=tuple(p99s),
                target=Target(compare=Compare.AT_MOST, value=1000),
                note=lag_note,
            ),
        ],
    )


def run_once(ctx: BenchContext, full: FullStack, count: int) -> tuple[float, tuple[float, ...]]:
    """Seed, wait until every job COMPLETED; jobs/s and the lag percentiles (seconds)."""
    conn = full.conn
    reset(conn)
    with RssSampler(full.stack.pids()) as sampler:
        seed_due_heartbeats(conn, full.user_id, count)
        started = time.monotonic()
        wait_for(
            lambda: flag(conn, QUERIES.all_finished),
            timeout_s=900,
            interval_s=0.02,
            what=f"{count} HEARTBEAT jobs to finish",
        )
        elapsed = time.monotonic() - started
    full.stack.check_alive()
    for name, peak in sampler.peak.items():
        ctx.load_rss[name] = max(peak, ctx.load_rss.get(name, 0.0))
    counts = job_counts(conn)
    if counts.get("COMPLETED", 0) != count:
        raise BenchError(f"expected {count} COMPLETED jobs, found {counts}")
    row = conn.execute(
        QUERIES.dispatch_lag_percentiles, {"fractions": list(LAG_FRACTIONS)}
    ).fetchone()
    assert row is not None
    return count / elapsed, tuple(float(lag) for lag in row["lags"])
