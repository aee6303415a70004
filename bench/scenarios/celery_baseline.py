"""Scenario 3: the Celery baseline for scenario 2, on the same machine in the same run.

A Celery worker (prefork pool, one child per core) takes tasks from the local Redis as broker. One
task per job; each task records its completion with an INSERT committed in Postgres (a table of
its own in a bench database), and is acknowledged after that (`task_acks_late`), as Chronoverse's
consumers commit only after the outcome is recorded. Measured: from the first `send_task` until
every task's row is committed, for as many jobs as scenario 2, in jobs/s.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import celery
import redis

from bench import celery_app
from bench.context import BenchContext
from bench.database import QUERIES, connect
from bench.environment import BenchError
from bench.measure import wait_for
from bench.results import Compare, Metric, ScenarioResult, Subject, Target
from bench.scenarios import heartbeat
from chronoverse.postgres import Conn

NAME = "celery"
REPEATS = 5
POOL = "prefork"


def run(ctx: BenchContext) -> ScenarioResult:
    count = ctx.scaled(heartbeat.WORKFLOWS)
    repeats = ctx.repeats(REPEATS)
    concurrency = os.cpu_count() or 1
    database_url = ctx.infra.create_database()
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    log_dir = ctx.options.run_dir / NAME
    log_dir.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "BENCH_CELERY_BROKER_URL": ctx.infra.redis_url,
        "BENCH_CELERY_QUEUE": queue,
        "BENCH_CELERY_DATABASE_URL": database_url,
    }
    samples: list[float] = []
    app = celery_app.create_app(ctx.infra.redis_url, queue)
    with connect(database_url) as conn, open(log_dir / "worker.log", "ab") as log:
        conn.execute(QUERIES.create_celery_runs)
        worker = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "celery"),
                "--app",
                "bench.celery_app",
                "worker",
                "--pool",
                POOL,
                "--concurrency",
                str(concurrency),
                "--queues",
                queue,
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "--loglevel",
                "WARNING",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            # Warm up: every child has connected to Postgres and the worker consumes.
            warm_up = 4 * concurrency
            _enqueue(app, range(-warm_up, 0))
            _wait_recorded(conn, worker, warm_up, timeout_s=60)
            for repeat in range(repeats):
                conn.execute(QUERIES.reset_celery_runs)
                started = time.monotonic()
                _enqueue(app, range(count))
                _wait_recorded(conn, worker, count, timeout_s=900)
                samples.append(count / (time.monotonic() - started))
                ctx.progress(f"{NAME} {repeat + 1}/{repeats}: {samples[-1]:,.0f} jobs/s")
        finally:
            worker.terminate()
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
            app.close()
            client = redis.Redis.from_url(ctx.infra.redis_url)
            client.delete(queue, f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}")
            client.close()
    return ScenarioResult(
        name=NAME,
        title="Celery baseline",
        setup=(
            f"celery {celery.__version__} worker, --pool {POOL} --concurrency {concurrency} (the "
            "machine's cores), Redis broker (the same Redis), task_acks_late, no result backend; "
            "gossip, mingle and heartbeat off. One task per job, each INSERTs its completion row "
            "(ON CONFLICT DO NOTHING) into Postgres with autocommit, one connection per child. "
            f"{count:,} tasks sent one by one with send_task; time until all {count:,} rows are "
            f"committed. {repeats} repeats."
        ),
        config={"jobs": count, "repeats": repeats, "pool": POOL, "concurrency": concurrency},
        metrics=[
            Metric(
                scenario=NAME,
                name="jobs recorded",
                unit="jobs/s",
                samples=(),
                baseline_samples=tuple(samples),
                baseline_name="Celery",
            )
        ],
    )


def _enqueue(app: celery.Celery, job_ids: range) -> None:
    for job_id in job_ids:
        app.send_task(celery_app.TASK_NAME, args=(job_id,))


def _wait_recorded(
    conn: Conn, worker: subprocess.Popen[bytes], count: int, *, timeout_s: float
) -> None:
    def recorded() -> bool:
        if worker.poll() is not None:
            raise BenchError(f"the Celery worker exited with {worker.returncode}")
        row = conn.execute(QUERIES.count_celery_runs).fetchone()
        return bool(row and row["n"] >= count)

    wait_for(recorded, timeout_s=timeout_s, interval_s=0.02, what=f"{count} Celery tasks")


def compare(results: list[ScenarioResult]) -> None:
    """Add the row `heartbeat` against Celery when both ran (the ratio the issue targets)."""
    by_name = {r.name: r for r in results}
    ours, theirs = by_name.get(heartbeat.NAME), by_name.get(NAME)
    if ours is None or theirs is None:
        return
    throughput = ours.metrics[0]
    ours.metrics.insert(
        1,
        Metric(
            scenario=heartbeat.NAME,
            name="jobs/s against Celery",
            unit="jobs/s",
            samples=throughput.samples,
            baseline_samples=theirs.metrics[0].baseline_samples,
            baseline_name="Celery",
            target=Target(compare=Compare.AT_LEAST, value=12, subject=Subject.RATIO),
        ),
    )
