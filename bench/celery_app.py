"""The Celery baseline: one task per job, which records its completion in Postgres.

The worker loads this module (`celery -A bench.celery_app worker`) and reads its broker, queue and
database from ``BENCH_CELERY_*`` variables that the Celery scenario sets. The bench process builds
its own app with :func:`create_app` to send the tasks.
"""

from __future__ import annotations

import os

import psycopg
from celery import Celery

from bench.database import QUERIES

TASK_NAME = "bench.record_run"


def create_app(broker_url: str, queue: str) -> Celery:
    app = Celery("bench", broker=broker_url, set_as_current=False)
    app.conf.update(
        task_default_queue=queue,
        # Acknowledge after the record is committed, as Chronoverse's consumers commit their offsets
        # only after the outcome is in Postgres: a worker that dies loses no job.
        task_acks_late=True,
        task_ignore_result=True,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )
    return app


app = create_app(
    os.environ.get("BENCH_CELERY_BROKER_URL", "redis://127.0.0.1:6379/0"),
    os.environ.get("BENCH_CELERY_QUEUE", "bench"),
)
_database_url = os.environ.get("BENCH_CELERY_DATABASE_URL", "")
# One connection per worker process, opened by its first task (prefork children must not share
# the parent's socket).
_connection: psycopg.Connection[tuple[object, ...]] | None = None


@app.task(name=TASK_NAME)
def record_run(job_id: int) -> None:
    """The job's work is nothing; its completion record is an INSERT committed in Postgres."""
    global _connection
    if _connection is None or _connection.closed:
        _connection = psycopg.connect(_database_url, autocommit=True)
    _connection.execute(QUERIES.record_celery_run, {"job_id": job_id})
