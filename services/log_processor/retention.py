"""The "retain logs" switch: deleting the lines of workflows that keep none, once viewers are done.

A workflow with ``retain_logs`` false still has its lines stored while a job runs: live viewers
fill gaps and resume (Last-Event-ID) from Postgres. When an attempt's end marker is stored, the
processor schedules its lines' deletion after ``log_purge_grace_s`` (the `schedule_purge`
query); :class:`LogPurger` deletes what is due every ``log_purge_interval_s``. Readers see the
attempt as purged (``jobs.logs_purged_attempt``) and stop at once.
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
JOBS_PER_PURGE = 100  # one short transaction each; a backlog takes several in a row


@dataclass(frozen=True, kw_only=True)
class Purged:
    jobs: int
    lines: int


class LogPurger:
    def __init__(self, pool: Pool, *, interval_s: float) -> None:
        self._pool = pool
        self._interval_s = interval_s

    def purge_due(self) -> Purged:
        """Delete the lines of every job whose purge is due now."""
        total = Purged(jobs=0, lines=0)
        while True:
            with self._pool.connection() as conn:
                row = conn.execute(QUERIES.purge_due_logs, {"jobs": JOBS_PER_PURGE}).fetchone()
            assert row is not None
            total = Purged(jobs=total.jobs + row["jobs"], lines=total.lines + row["lines"])
            LINES_PURGED.inc(row["lines"])
            if row["jobs"] < JOBS_PER_PURGE:
                return total

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
