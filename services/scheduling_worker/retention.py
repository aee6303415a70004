"""Retention: delete finished jobs (with their logs and history) and skipped-slot entries by age
and by count per workflow, and notifications and finished webhook deliveries by age, in short
bounded statements on a thread of their own.

A pass walks every workflow in windows of ids (CHRONOVERSE_RETENTION_WORKFLOWS_PER_BATCH). For
each window it deletes jobs, then skipped-slot entries, at most CHRONOVERSE_RETENTION_BATCH_SIZE
rows per statement and transaction, pausing between statements, until the window has nothing
left to delete. The scheduling loop never waits for it: it has its own thread and connection.
Active jobs are never deleted (each DELETE checks the status on the locked row). Several
scheduling workers may prune at once; a row two of them pick is deleted once.
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


@dataclass(frozen=True, kw_only=True)
class RetentionPolicy:
    """What is kept: finished jobs and skipped slots younger than their age, newest N each."""

    job_age: timedelta
    jobs_per_workflow: int
    skip_age: timedelta
    skips_per_workflow: int
    notification_age: timedelta = timedelta(days=30)
    batch_size: int
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
        """The (table, query, parameters) that prune one window, jobs first."""
        return [
            (
                "jobs",
                QUERIES.prune_jobs,
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
        deleted = {"jobs": 0, "skipped_runs": 0, "notifications": 0, "webhook_deliveries": 0}
        statements = largest = 0

        def prune(table: str, query: str, params: dict[str, object]) -> None:
            """Run one statement until it deletes less than a batch."""
            nonlocal statements, largest
            while stop is None or not stop.is_set():
                with self._pool.connection() as conn:
                    count = conn.execute(query, params).rowcount
                statements += 1
                largest = max(largest, count)
                deleted[table] += count
                DELETED.labels(table).inc(count)
                if self._pause_s and stop is not None:
                    stop.wait(self._pause_s)
                if count < self._policy.batch_size:
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
                prune(table, query, {**params, "workflow_ids": ids})
            if len(rows) < self._policy.workflows_per_batch:
                break
            after = ids[-1]
        for table, query, params in self._policy.by_age(self._clock()):
            prune(table, query, params)
        return PassResult(
            jobs=deleted["jobs"],
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
