"""Analytics of a user's or a workflow's jobs over a window, computed in Postgres.

The window is the jobs created at or after ``since``, up to now; which windows a request may ask
for is decided here, apart from the queries. The figures come from one aggregate query each
(store/queries.sql), served by the indexes of migrations/0013_analytics.sql.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

from chronoverse.domain import BuildStatus, JobStatus, WorkflowState
from chronoverse.errors import FieldError, InvalidFieldsError
from chronoverse.postgres import Conn
from chronoverse.sql import Queries
from services.server.schemas import DEFAULT_ANALYTICS_DAYS, MAX_ANALYTICS_DAYS
from services.server.store import workflows

QUERIES = Queries.load(Path(__file__).with_name("queries.sql"))
DEFAULT_WINDOW = timedelta(days=DEFAULT_ANALYTICS_DAYS)
MAX_WINDOW = timedelta(days=MAX_ANALYTICS_DAYS)
# A client that computes "90 days ago" or "now" on its own clock is not refused for the
# milliseconds (or the small clock skew) between its clock and ours.
CLOCK_GRACE = timedelta(minutes=5)


@dataclass(frozen=True, kw_only=True)
class Window:
    since: datetime
    until: datetime


def window(since: datetime | None, *, now: datetime) -> Window:
    """The window a request asks for: from ``since`` (default: DEFAULT_WINDOW ago) to ``now``.

    ``since`` must be timezone-aware, at most MAX_WINDOW ago and not in the future."""
    if since is None:
        return Window(since=now - DEFAULT_WINDOW, until=now)
    if since.tzinfo is None:
        raise InvalidFieldsError([FieldError("since", "must have a time zone offset")])
    if since > now + CLOCK_GRACE:
        raise InvalidFieldsError([FieldError("since", "must not be in the future")])
    if since < now - MAX_WINDOW - CLOCK_GRACE:
        raise InvalidFieldsError(
            [FieldError("since", f"must be at most {MAX_ANALYTICS_DAYS} days ago")]
        )
    return Window(since=since, until=now)


_FINISHED = (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELED)


@dataclass(frozen=True, kw_only=True)
class JobStats:
    by_status: Mapping[JobStatus, int]
    duration_p50_s: float | None
    duration_p95_s: float | None
    execution_time_s: float
    log_lines: int

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> JobStats:
        return cls(
            by_status={status: int(row[status.value.lower()]) for status in JobStatus},
            duration_p50_s=row["p50_s"],
            duration_p95_s=row["p95_s"],
            execution_time_s=float(row["execution_s"]),
            log_lines=int(row["log_lines"]),
        )

    @property
    def total(self) -> int:
        return sum(self.by_status.values())

    @property
    def success_rate(self) -> float | None:
        """COMPLETED over finished jobs; None when none finished."""
        finished = sum(self.by_status[status] for status in _FINISHED)
        return self.by_status[JobStatus.COMPLETED] / finished if finished else None


@dataclass(frozen=True, kw_only=True)
class WorkflowStats:
    by_state: Mapping[WorkflowState, int]
    by_build_status: Mapping[BuildStatus, int]

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> WorkflowStats:
        return cls(
            by_state={state: int(row[state.value]) for state in WorkflowState},
            by_build_status={
                status: int(row[f"build_{status.value.lower()}"]) for status in BuildStatus
            },
        )

    @property
    def total(self) -> int:
        return sum(self.by_state.values())


def _tuned(conn: Conn) -> None:
    """Settings for the aggregates below, local to the caller's transaction."""
    conn.execute(QUERIES.analytics_settings)


def user_jobs(conn: Conn, user_id: UUID, since: datetime) -> JobStats:
    _tuned(conn)
    row = conn.execute(QUERIES.user_job_analytics, {"user_id": user_id, "since": since}).fetchone()
    assert row is not None  # an aggregate without GROUP BY has one row
    return JobStats.from_row(row)


def workflow_jobs(conn: Conn, user_id: UUID, workflow_id: UUID, since: datetime) -> JobStats:
    workflows.get(conn, user_id, workflow_id)  # 404 for a missing or foreign workflow
    _tuned(conn)
    row = conn.execute(
        QUERIES.workflow_job_analytics,
        {"user_id": user_id, "workflow_id": workflow_id, "since": since},
    ).fetchone()
    assert row is not None
    return JobStats.from_row(row)


def user_workflows(conn: Conn, user_id: UUID) -> WorkflowStats:
    row = conn.execute(QUERIES.workflow_analytics, {"user_id": user_id}).fetchone()
    assert row is not None
    return WorkflowStats.from_row(row)
