"""Retention: delete finished jobs (with their logs and history) and skipped-slot entries by age
and by count per workflow, and notifications and finished webhook deliveries by age, in short
bounded statements on a thread of their own.

A pass walks every workflow in windows of ids (CHRONOVERSE_RETENTION_WORKFLOWS_PER_BATCH). For
each window it picks at most CHRONOVERSE_RETENTION_BATCH_SIZE jobs to delete, deletes their log
lines and history at most CHRONOVERSE_RETENTION_LINES_PER_BATCH rows per statement (a job may
have millions of lines: deleting the job alone would cascade to all of them in one transaction),
then the jobs; then skipped-slot entries, at most CHRONOVERSE_RETENTION_BATCH_SIZE per statement.
Each statement is a transaction of its own, with a pause between them. The scheduling loop never
waits for it: it has its own thread and connection. Active jobs, and their lines, are never
deleted (each DELETE checks the status). Several scheduling workers may prune at once; a row two
of them pick is deleted once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from uuid import UUID

import psycopg
from prometheus_client import Counter

from chronoverse.domain import utcnow
from chronoverse.errors import ChronoverseError
from chronoverse.postgres import Pool
from chronoverse.sql import Queries
from services.scheduling_worker.settings import Settings

logger = logging.getLogger(__name__)
QUERIES = Queries.load(Path(__file__).with_name("queries.sql"))

DELETED = Counter(
    "chronoverse_retention_deleted", "Rows deleted by retention, by table.", ["table"]
)
FIRST_ID = UUID(int=0)
DELETES = ("jobs", "job_logs", "job_events", "skipped_runs", "notifications", "webhook_deliveries")


@dataclass(frozen=True, kw_only=True)
class RetentionPolicy:
    """What is kept: finished jobs and skipped slots younger than their age, newest N each."""

    job_age: timedelta
    jobs_per_workflow: int
    skip_age: timedelta
    skips_per_workflow: int
    notification_age: timedelta = timedelta(days=30)
    batch_size: int
    lines_batch_size: int = 10_000
    workflows_per_batch: int

    @classmethod
    def from_settings(cls, settings: Settings) -> RetentionPolicy:
        return cls(
            job_age=timedelta(days=settings.retention_job_days),
            jobs_per_workflow=settings.retention_jobs_per_workflow,
            skip_age=timedelta(days=settings.retention_skips_days),
            skips_per_workflow=settings.retention_skips_per_workflow,
            notification_age=timedelta(days=settings.retention_notification_days),
            batch_size=settings.retention_batch_size,
            lines_batch_size=settings.retention_lines_per_batch,
            workflows_per_batch=settings.retention_workflows_per_batch,
        )

    def by_age(self, now: datetime) -> list[tuple[str, str, dict[str, object]]]:
        """The (table, query, parameters) that prune what is kept by age alone, not per
        workflow: notifications and finished webhook deliveries."""
        params: dict[str, object] = {
            "before": now - self.notification_age,
            "limit": self.batch_size,
        }
        return [
            ("notifications", QUERIES.prune_notifications, params),
            ("webhook_deliveries", QUERIES.prune_webhook_deliveries, params),
        ]

    def statements(self, now: datetime) -> list[tuple[str, str, dict[str, object]]]:
        """The (table, query, parameters) that prune one window, jobs first; the jobs' query picks
        them (their lines, history and rows are then deleted by :meth:`Retention.prune_pass`)."""
        return [
            (
                "jobs",
                QUERIES.doomed_jobs,
                {
                    "before": now - self.job_age,
                    "keep": self.jobs_per_workflow,
                    "limit": self.batch_size,
                },
            ),
            (
                "skipped_runs",
                QUERIES.prune_skips,
                {
                    "before": now - self.skip_age,
                    "keep": self.skips_per_workflow,
                    "limit": self.batch_size,
                },
            ),
        ]


@dataclass(frozen=True, kw_only=True)
class PassResult:
    jobs: int
    job_logs: int = 0
    job_events: int = 0
    skipped_runs: int
    notifications: int = 0
    webhook_deliveries: int = 0
    statements: int
    largest_batch: int  # the most rows one statement deleted


class Retention:
    def __init__(
        self,
        pool: Pool,
        policy: RetentionPolicy,
        *,
        pause_s: float = 0.0,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._pool = pool
        self._policy = policy
        self._pause_s = pause_s
        self._clock = clock

    def prune_pass(self, stop: threading.Event | None = None) -> PassResult:
        """Walk every workflow once, deleting what the policy no longer keeps."""
        deleted: dict[str, int] = {table: 0 for table in DELETES}
        statements = largest = 0

        def stopped() -> bool:
            return stop is not None and stop.is_set()

        def delete(table: str, query: str, params: dict[str, object]) -> int:
            """One statement, in a transaction of its own; the rows it deleted."""
            nonlocal statements, largest
            with self._pool.connection() as conn:
                count = conn.execute(query, params).rowcount
            statements += 1
            largest = max(largest, count)
            deleted[table] += count
            DELETED.labels(table).inc(count)
            if self._pause_s and stop is not None:
                stop.wait(self._pause_s)
            return count

        def prune(table: str, query: str, params: dict[str, object], *, batch: int) -> None:
            """Run one statement until it deletes less than a batch."""
            while not stopped() and delete(table, query, params) >= batch:
                pass

        def prune_jobs(params: dict[str, object]) -> None:
            """Pick jobs, delete their lines and history in batches of rows, then the jobs;
            again until fewer than a batch of jobs is left."""
            while not stopped():
                with self._pool.connection() as conn:
                    rows = conn.execute(QUERIES.doomed_jobs, params).fetchall()
                if not rows:
                    return
                ids: dict[str, object] = {"job_ids": [row["id"] for row in rows]}
                rows_limit = {**ids, "limit": self._policy.lines_batch_size}
                prune(
                    "job_logs",
                    QUERIES.prune_job_lines,
                    rows_limit,
                    batch=self._policy.lines_batch_size,
                )
                prune(
                    "job_events",
                    QUERIES.prune_job_events,
                    rows_limit,
                    batch=self._policy.lines_batch_size,
                )
                if stopped():
                    return
                gone = delete("jobs", QUERIES.prune_jobs, ids)
                # A job whose lines kept arriving stays for the next pass rather than looping.
                if len(rows) < self._policy.batch_size or gone < len(rows):
                    return

        after = FIRST_ID
        while stop is None or not stop.is_set():
            with self._pool.connection() as conn:
                rows = conn.execute(
                    QUERIES.retention_window,
                    {"after": after, "limit": self._policy.workflows_per_batch},
                ).fetchall()
            if not rows:
                break
            ids = [row["id"] for row in rows]
            for table, query, params in self._policy.statements(self._clock()):
                if table == "jobs":
                    prune_jobs({**params, "workflow_ids": ids})
                else:
                    prune(
                        table, query, {**params, "workflow_ids": ids}, batch=self._policy.batch_size
                    )
            if len(rows) < self._policy.workflows_per_batch:
                break
            after = ids[-1]
        for table, query, params in self._policy.by_age(self._clock()):
            prune(table, query, params, batch=self._policy.batch_size)
        return PassResult(
            jobs=deleted["jobs"],
            job_logs=deleted["job_logs"],
            job_events=deleted["job_events"],
            skipped_runs=deleted["skipped_runs"],
            notifications=deleted["notifications"],
            webhook_deliveries=deleted["webhook_deliveries"],
            statements=statements,
            largest_batch=largest,
        )

    def run(self, stop: threading.Event, *, interval_s: float) -> None:
        """Prune every ``interval_s`` until ``stop``; a failed pass is logged and retried."""
        while not stop.is_set():
            try:
                result = self.prune_pass(stop)
            except (psycopg.Error, ChronoverseError) as exc:
                logger.warning(
                    "retention pass failed, retrying in %.0fs: %s",
                    interval_s,
                    exc,
                    exc_info=exc,
                    extra={"action": "retention_failed"},
                )
            else:
                if result.jobs or result.skipped_runs or result.notifications:
                    logger.info(
                        "retention deleted %d jobs, %d skipped-slot entries, %d notifications "
                        "and %d webhook deliveries",
                        result.jobs,
                        result.skipped_runs,
                        result.notifications,
                        result.webhook_deliveries,
                        extra={
                            "action": "retention_pruned",
                            "jobs": result.jobs,
                            "skipped_runs": result.skipped_runs,
                            "notifications": result.notifications,
                            "webhook_deliveries": result.webhook_deliveries,
                        },
                    )
            stop.wait(interval_s)
