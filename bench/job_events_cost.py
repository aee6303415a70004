"""What the job-history triggers (migrations/0012_job_events.sql) cost the HEARTBEAT hot path.

``python -m bench.job_events_cost`` makes a scratch database of its own on the configured Postgres
server (never the development or test database) with ``--jobs`` liveness workflows, then runs the
statements a liveness job goes through, with the services' own SQL, in the batches the services
use: the scheduler's insert of the jobs (QUEUED and counted as published, as the scheduler writes
them: no separate PENDING -> QUEUED), the execution worker's claim, a renewal of every live lease,
and the batch completion. Each round runs once with the triggers and once without them
(``ALTER TABLE jobs DISABLE TRIGGER``), alternating, and the table gives the best of ``--rounds``
rounds per statement (other work on the machine only ever adds time). The scratch database is
dropped at the end. docs/notifications.md ("Job history") has the numbers.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import click
from psycopg import sql

from bench.database import QUERIES, connect, create_user
from bench.environment import Infrastructure
from chronoverse.postgres import Conn
from chronoverse.sql import Queries

ROOT = Path(__file__).resolve().parent.parent
SHARED = Queries.load(ROOT / "chronoverse" / "queries.sql")
WORKER = Queries.load(ROOT / "services" / "execution_worker" / "queries.sql")

PHASES = ("insert", "claim", "renew", "complete")


def timed(step: Callable[[], Any]) -> float:
    started = time.perf_counter()
    step()
    return (time.perf_counter() - started) * 1000


def timed_batches(items: list[Any], size: int, step: Callable[[list[Any]], Any]) -> float:
    """ms spent running ``step`` on each batch of ``size`` items in turn."""
    return sum(timed(partial(step, items[i : i + size])) for i in range(0, len(items), size))


def one_round(
    conn: Conn, workflows: list[dict[str, Any]], slot: datetime, batch: int
) -> dict[str, float]:
    """The statements of ``len(workflows)`` liveness jobs, each timed; ms per statement kind."""
    spent: dict[str, float] = {}
    ids = sorted(uuid.uuid4() for _ in workflows)
    with conn.transaction():
        spent["insert"] = timed(
            lambda: conn.execute(
                SHARED.insert_automatic_jobs,
                {
                    "ids": ids,
                    "workflow_ids": [w["id"] for w in workflows],
                    "user_ids": [w["user_id"] for w in workflows],
                    "slots": [slot] * len(workflows),
                    "queued": [True] * len(workflows),
                },
            )
        )
    claims: list[tuple[uuid.UUID, int, uuid.UUID]] = []

    def claim(chunk: list[uuid.UUID]) -> None:
        rows = conn.execute(
            WORKER.claim_jobs,
            {"ids": chunk, "liveness_only": True, "owner": "bench", "lease_s": 60},
        ).fetchall()
        claims.extend((r["id"], r["lease_token"], r["workflow_id"]) for r in rows)

    spent["claim"] = timed_batches(ids, batch, claim)
    assert len(claims) == len(ids)
    spent["renew"] = timed_batches(
        claims,
        batch,
        lambda chunk: conn.execute(
            WORKER.renew_leases,
            {"ids": [c[0] for c in chunk], "tokens": [c[1] for c in chunk], "lease_s": 60},
        ),
    )

    def complete(chunk: list[tuple[uuid.UUID, int, uuid.UUID]]) -> None:
        with conn.transaction():
            conn.execute(WORKER.lock_workflows, {"ids": [c[2] for c in chunk]})
            conn.execute(
                WORKER.complete_jobs,
                {"ids": [c[0] for c in chunk], "tokens": [c[1] for c in chunk]},
            )

    spent["complete"] = timed_batches(claims, batch, complete)
    return spent


@click.command(name="python -m bench.job_events_cost")
@click.option("--jobs", default=5000, show_default=True, help="Liveness jobs per round.")
@click.option("--batch", default=500, show_default=True, help="Jobs per statement.")
@click.option(
    "--rounds", default=5, show_default=True, help="Rounds per variant (the best counts)."
)
def main(jobs: int, batch: int, rounds: int) -> None:
    infra = Infrastructure.from_environ({})
    try:
        url = infra.create_database()
        with connect(url) as conn:
            run(conn, jobs, batch, rounds)
    finally:
        infra.cleanup()


def run(conn: Conn, jobs: int, batch: int, rounds: int) -> None:
    user_id = create_user(conn)
    conn.execute(QUERIES.insert_due_heartbeats, {"user_id": user_id, "count": jobs})
    workflows = conn.execute("SELECT id, user_id FROM workflows ORDER BY id").fetchall()
    results: dict[bool, list[dict[str, float]]] = {True: [], False: []}
    start = datetime.now(UTC).replace(microsecond=0)
    n = 0
    for _ in range(rounds + 1):  # the first pair warms up caches and prepared statements
        for enabled in (True, False):
            toggle = sql.SQL("ENABLE" if enabled else "DISABLE")
            for trigger in ("jobs_created", "jobs_transition"):
                conn.execute(
                    sql.SQL("ALTER TABLE jobs {} TRIGGER {}").format(
                        toggle, sql.Identifier(trigger)
                    )
                )
            n += 1
            results[enabled].append(one_round(conn, workflows, start + timedelta(minutes=n), batch))
    events = conn.execute("SELECT count(*) AS n FROM job_events").fetchone()
    click.echo(f"{jobs} liveness jobs per round, {batch} per statement, best of {rounds} rounds")
    click.echo(f"{'statement':<10} {'with (ms)':>10} {'without (ms)':>13} {'extra/job (us)':>15}")
    total = {True: 0.0, False: 0.0}
    for phase in PHASES:
        best = {e: min(r[phase] for r in results[e][1:]) for e in (True, False)}
        total[True] += best[True]
        total[False] += best[False]
        extra = (best[True] - best[False]) * 1000 / jobs
        click.echo(f"{phase:<10} {best[True]:>10.1f} {best[False]:>13.1f} {extra:>15.1f}")
    extra = (total[True] - total[False]) * 1000 / jobs
    click.echo(f"{'all':<10} {total[True]:>10.1f} {total[False]:>13.1f} {extra:>15.1f}")
    click.echo(f"events written: {events['n'] if events else 0}")


if __name__ == "__main__":
    main()
