"""The "retain logs" switch: deleting the lines of workflows that keep none, once viewers are done.

A workflow with ``retain_logs`` false still has its lines stored while a job runs: live viewers
fill gaps and resume (Last-Event-ID) from Postgres. When an attempt's end marker is stored, the
processor schedules its lines' deletion after ``log_purge_grace_s`` (the `schedule_purge`
query); :class:`LogPurger` deletes what is due every ``log_purge_interval_s``: the lines first,
at most ``log_purge_batch_lines`` per statement and transaction (a job may have millions), then
it records each job whose lines are gone as purged (``jobs.logs_purged_attempt``), and readers
stop at once. While a job's lines go, a reader may see fewer of them for a moment.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import psycopg
from prometheus_client import Counter

from chronoverse.postgres import Pool
from chronoverse.sql import Queries

logger = logging.getLogger(__name__)
QUERIES = Queries.load(Path(__file__).with_name("queries.sql"))

LINES_PURGED = Counter(
    "chronoverse_log_lines_purged", "Log lines deleted because their workflow keeps no logs."
)
JOBS_PER_PURGE = 100  # jobs handled together; a backlog takes several rounds in a row


@dataclass(frozen=True, kw_only=True)
class Purged:
    jobs: int
    lines: int
    largest_batch: int = 0  # the most lines one statement deleted


class LogPurger:
    def __init__(self, pool: Pool, *, interval_s: float, batch_lines: int = 10_000) -> None:
        self._pool = pool
        self._interval_s = interval_s
        self._batch_lines = batch_lines

    def purge_due(self) -> Purged:
        """Delete the lines of every job whose purge is due now, in bounded statements."""
        jobs = lines = largest = 0
        params = {"jobs": JOBS_PER_PURGE, "limit": self._batch_lines}
        while True:
            while True:
                with self._pool.connection() as conn:
                    count = conn.execute(QUERIES.purge_due_lines, params).rowcount
                lines += count
                largest = max(largest, count)
                LINES_PURGED.inc(count)
                if count < self._batch_lines:
                    break
            with self._pool.connection() as conn:
                done = conn.execute(QUERIES.finish_due_purges, params).rowcount
            jobs += done
            # Fewer than a round's jobs: none is due any more, or the rest are another purger's
            # (or have late lines, for the next interval).
            if done < JOBS_PER_PURGE:
                return Purged(jobs=jobs, lines=lines, largest_batch=largest)

    def run(self, stop: threading.Event) -> None:
        """Purge every ``interval_s`` until ``stop``; a database error is logged and retried at
        the next interval (the rows stay due, nothing is lost)."""
        while not stop.wait(self._interval_s):
            try:
                purged = self.purge_due()
            except psycopg.Error as exc:
                logger.warning(
                    "could not delete log lines that are not retained: %s",
                    exc,
                    exc_info=exc,
                    extra={"action": "log_purge_failed"},
                )
                continue
            if purged.jobs:
                logger.info(
                    "deleted %d log lines of %d jobs that keep no logs",
                    purged.lines,
                    purged.jobs,
                    extra={"action": "logs_purged", "jobs": purged.jobs, "lines": purged.lines},
                )
