"""Analytics at scale: GET /analytics and GET /workflows/{id}/analytics over 1M jobs.

``python -m bench.analytics_scale`` makes a scratch database of its own on the configured Postgres
server (never the development or test database), migrates it, and loads ``--jobs`` jobs with
generate_series: 90% of them of one user over the last 90 days (a busy workflow that runs every
minute and twenty hourly-ish ones), the rest of another user. Each RUNNING job has stored lines
that analytics count in job_logs; the others' lines are counted in jobs.log_lines, as the log
processor leaves them. It then runs the server's queries (store/queries.sql) for windows of 1, 7
(the default), 30 and 90 days (the maximum): the median of ``--runs`` runs on one connection (so
past psycopg's prepare threshold, as the server's pooled connections are), with EXPLAIN ANALYZE
for the widest window, and once more without the covering index to show what it buys.

The scratch database is dropped at the end. docs/benchmarks.md has the numbers.
"""

from __future__ import annotations

import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, LiteralString

import click

from bench.database import QUERIES, connect, create_user
from bench.environment import Infrastructure
from chronoverse.postgres import Conn
from chronoverse.sql import Queries

ROOT = Path(__file__).resolve().parent.parent
SERVER = Queries.load(ROOT / "services" / "server" / "store" / "queries.sql")
WINDOWS_DAYS = (1, 7, 30, 90)
SPAN_DAYS = 90


def workflows(conn: Conn, user_id: uuid.UUID, count: int) -> list[uuid.UUID]:
    rows = conn.execute(
        QUERIES.analytics_scale_workflows, {"user_id": user_id, "count": count}
    ).fetchall()
    return [uuid.UUID(str(row["id"])) for row in rows]


def load(
    conn: Conn, user_id: uuid.UUID, workflow_ids: list[uuid.UUID], total: int, *, chunk: int
) -> None:
    """``total`` jobs over the last SPAN_DAYS days, in chunks of ``chunk`` statements."""
    for first in range(0, total, chunk):
        conn.execute(
            QUERIES.analytics_scale_jobs,
            {
                "user_id": user_id,
                "workflow_ids": workflow_ids,
                "first": first,
                "count": min(chunk, total - first),
                "total": total,
                "days": SPAN_DAYS,
            },
        )


def timed(conn: Conn, query: LiteralString, params: dict[str, Any], runs: int) -> float:
    """The median wall time of ``query`` in ms, after one warm-up run, each in a transaction
    with the server's analytics settings (store/analytics.py)."""
    times: list[float] = []
    for _ in range(runs + 1):
        with conn.transaction():
            conn.execute(SERVER.analytics_settings)
            started = time.perf_counter()
            conn.execute(query, params).fetchall()
            times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times[1:])


def explain(conn: Conn, query: LiteralString, params: dict[str, Any]) -> str:
    # EXPLAIN takes the query's parameters bound client-side like any other statement.
    with conn.transaction():
        conn.execute(SERVER.analytics_settings)
        rows = conn.execute(b"EXPLAIN (ANALYZE, BUFFERS) " + query.encode(), params).fetchall()
    return "\n".join(str(row["QUERY PLAN"]) for row in rows)


@click.command(name="python -m bench.analytics_scale")
@click.option("--jobs", "total", default=1_000_000, show_default=True, help="Jobs in all.")
@click.option("--lines", default=1000, show_default=True, help="Stored lines per RUNNING job.")
@click.option("--runs", default=5, show_default=True, help="Runs of each query (median).")
@click.option("--explain/--no-explain", "show_plans", default=True, show_default=True)
def main(total: int, lines: int, runs: int, show_plans: bool) -> None:
    infra = Infrastructure.from_environ({})
    try:
        url = infra.create_database()
        with connect(url) as conn:
            run(conn, total, lines, runs, show_plans)
    finally:
        infra.cleanup()


def run(conn: Conn, total: int, lines: int, runs: int, show_plans: bool) -> None:
    started = time.perf_counter()
    measured, other = create_user(conn), create_user(conn)
    busy = workflows(conn, measured, 1)
    hourly = workflows(conn, measured, 20)
    # The busy workflow runs every minute for SPAN_DAYS days; the rest of the measured user's
    # 90% goes to the others; the other user has the remaining 10%.
    busy_jobs = min(SPAN_DAYS * 24 * 60, total // 2)
    mine = total * 9 // 10
    chunk = 100_000
    load(conn, measured, busy, busy_jobs, chunk=chunk)
    load(conn, measured, hourly, mine - busy_jobs, chunk=chunk)
    load(conn, other, workflows(conn, other, 5), total - mine, chunk=chunk)
    conn.execute(QUERIES.analytics_scale_lines, {"user_id": measured, "lines": lines})
    conn.execute("VACUUM ANALYZE jobs")
    conn.execute("VACUUM ANALYZE job_logs")
    count = conn.execute("SELECT count(*) AS n FROM jobs").fetchone()
    click.echo(
        f"loaded {count['n'] if count else 0:,} jobs ({busy_jobs:,} of the busy workflow) in "
        f"{time.perf_counter() - started:.0f} s"
    )

    now = datetime.now(UTC)
    cases: dict[str, tuple[LiteralString, dict[str, Any]]] = {}
    results: dict[str, dict[int, float]] = {}
    for days in WINDOWS_DAYS:
        since = now - timedelta(days=days)
        cases[f"user, {days} d"] = (
            SERVER.user_job_analytics,
            {"user_id": measured, "since": since},
        )
        for name, workflow_id in (("busy workflow", busy[0]), ("hourly workflow", hourly[0])):
            cases[f"{name}, {days} d"] = (
                SERVER.workflow_job_analytics,
                {"user_id": measured, "workflow_id": workflow_id, "since": since},
            )
    for label, (query, params) in cases.items():
        kind, days_text = label.rsplit(", ", 1)
        results.setdefault(kind, {})[int(days_text.split()[0])] = timed(conn, query, params, runs)
    workflows_ms = timed(conn, SERVER.workflow_analytics, {"user_id": measured}, runs)
    in_window = conn.execute(
        SERVER.user_job_analytics, {"user_id": measured, "since": now - timedelta(days=90)}
    ).fetchone()
    click.echo(f"the user's 90-day figures: {dict(in_window or {})}")
    if show_plans:
        for label in ("user, 90 d", "busy workflow, 90 d"):
            query, params = cases[label]
            click.echo(f"\nEXPLAIN ANALYZE, {label}:\n{explain(conn, query, params)}")

    conn.execute(QUERIES.analytics_scale_drop_index)
    conn.execute("ANALYZE jobs")
    without = {days: timed(conn, *cases[f"user, {days} d"], runs=runs) for days in WINDOWS_DAYS}
    if show_plans:
        click.echo(
            f"\nEXPLAIN ANALYZE, user, 90 d, no covering index:\n"
            f"{explain(conn, *cases['user, 90 d'])}"
        )
    conn.execute(QUERIES.analytics_scale_create_index)
    report(results, without, workflows_ms)


def report(
    results: dict[str, dict[int, float]], without: dict[int, float], workflows_ms: float
) -> None:
    click.echo("\n| query (median ms) | " + " | ".join(f"{d} d" for d in WINDOWS_DAYS) + " |")
    click.echo("|---|" + "---:|" * len(WINDOWS_DAYS))
    for kind, by_days in results.items():
        click.echo(f"| {kind} | " + " | ".join(f"{by_days[d]:.1f}" for d in WINDOWS_DAYS) + " |")
    click.echo(
        "| user, without jobs_user_analytics_idx | "
        + " | ".join(f"{without[d]:.1f}" for d in WINDOWS_DAYS)
        + " |"
    )
    click.echo(f"\nworkflows by state and build status (user): {workflows_ms:.1f} ms")


if __name__ == "__main__":
    main()
