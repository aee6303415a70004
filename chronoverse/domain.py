"""Domain vocabulary shared by every service: kinds, statuses and the frozen values built from
rows.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from chronoverse.schedules import (
    Catchup,
    CatchupPolicy,
    CronSchedule,
    DstGap,
    DstOverlap,
    DstPolicy,
    IntervalSchedule,
    Schedule,
)


def utcnow() -> datetime:
    """The current time, timezone-aware (the default clock of every loop)."""
    return datetime.now(UTC)


class WorkflowKind(enum.StrEnum):
    HEARTBEAT = "HEARTBEAT"
    CONTAINER = "CONTAINER"


class BuildStatus(enum.StrEnum):
    """Where the build of a workflow's generation is; a new generation starts again at QUEUED."""

    QUEUED = "QUEUED"
    STARTED = "STARTED"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"


class JobStatus(enum.StrEnum):
    PENDING = "PENDING"
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELED = "CANCELED"

    @property
    def is_final(self) -> bool:
        return self in _FINAL_JOB_STATUSES


_FINAL_JOB_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELED})


class JobTrigger(enum.StrEnum):
    AUTOMATIC = "AUTOMATIC"
    MANUAL = "MANUAL"


class FailureKind(enum.StrEnum):
    """USER failures count toward auto-termination; SYSTEM failures are retried first."""

    USER = "USER"
    SYSTEM = "SYSTEM"


class LogStream(enum.StrEnum):
    STDOUT = "stdout"
    STDERR = "stderr"


class Topic(enum.StrEnum):
    """The Kafka topics Chronoverse uses, and what flows on each."""

    WORKFLOWS = "workflows"  # outbox relay -> workflow_worker, key: workflow id
    JOBS = "jobs"  # scheduling_worker -> execution_worker, key: workflow id
    JOB_LOGS = "job_logs"  # execution_worker -> log_processor, key: job id


DEAD_LETTER_SUFFIX = ".dlq"
"""Each topic's dead letters (messages its consumer could not decode or handle) go to
``<topic>.dlq``; see :mod:`chronoverse.kafka.deadletters`."""


class WorkflowState(enum.StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"  # no automatic jobs, no counted failures; manual runs still allowed
    TERMINATED = "terminated"  # final


def schedule_of(
    interval_minutes: int | None, cron: str | None, timezone: str, dst: DstPolicy
) -> Schedule:
    """A workflow's schedule from its columns: exactly one of ``interval_minutes`` and ``cron``."""
    if cron is not None:
        return CronSchedule(expression=cron, timezone=timezone, dst=dst)
    assert interval_minutes is not None
    return IntervalSchedule(minutes=interval_minutes)


def dst_of(row: Mapping[str, Any]) -> DstPolicy:
    """The DST policy stored in a workflow row's ``dst_gap`` and ``dst_overlap``."""
    return DstPolicy(gap=DstGap(row["dst_gap"]), overlap=DstOverlap(row["dst_overlap"]))


def catchup_of(row: Mapping[str, Any]) -> CatchupPolicy:
    """The catch-up policy stored in a workflow row's ``catchup`` and ``catchup_window_minutes``."""
    return CatchupPolicy(mode=Catchup(row["catchup"]), window_minutes=row["catchup_window_minutes"])


@dataclass(frozen=True, kw_only=True)
class Workflow:
    id: UUID
    user_id: UUID
    name: str
    kind: WorkflowKind
    payload: dict[str, Any]
    interval_minutes: int | None  # exactly one of interval_minutes and cron is set
    cron: str | None = None
    timezone: str = "UTC"  # the defaults are the database's
    dst: DstPolicy = field(default_factory=DstPolicy)
    catchup: CatchupPolicy = field(default_factory=CatchupPolicy)
    paused_at: datetime | None = None
    max_consecutive_job_failures_allowed: int
    consecutive_job_failures_count: int
    retain_logs: bool = True  # false: log lines are deleted shortly after each attempt ends
    build_status: BuildStatus
    build_error: str | None
    generation: int
    next_run_at: datetime | None
    created_at: datetime
    updated_at: datetime
    terminated_at: datetime | None
    terminated_reason: str | None

    @property
    def is_terminated(self) -> bool:
        return self.terminated_at is not None

    @property
    def state(self) -> WorkflowState:
        if self.terminated_at is not None:
            return WorkflowState.TERMINATED
        return WorkflowState.PAUSED if self.paused_at is not None else WorkflowState.ACTIVE

    @property
    def schedule(self) -> Schedule:
        return schedule_of(self.interval_minutes, self.cron, self.timezone, self.dst)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Workflow:
        return cls(
            id=row["id"],
            user_id=row["user_id"],
            name=row["name"],
            kind=WorkflowKind(row["kind"]),
            payload=row["payload"],
            interval_minutes=row["interval_minutes"],
            cron=row["cron"],
            timezone=row["timezone"],
            dst=dst_of(row),
            catchup=catchup_of(row),
            paused_at=row["paused_at"],
            max_consecutive_job_failures_allowed=row["max_consecutive_job_failures_allowed"],
            consecutive_job_failures_count=row["consecutive_job_failures_count"],
            retain_logs=row.get("retain_logs", True),
            build_status=BuildStatus(row["build_status"]),
            build_error=row["build_error"],
            generation=row["generation"],
            next_run_at=row["next_run_at"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            terminated_at=row["terminated_at"],
            terminated_reason=row["terminated_reason"],
        )


@dataclass(frozen=True, kw_only=True)
class User:
    id: UUID
    email: str
    created_at: datetime

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> User:
        return cls(id=row["id"], email=row["email"], created_at=row["created_at"])
