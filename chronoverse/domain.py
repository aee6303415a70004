"""Domain vocabulary shared by every service: kinds, statuses and the frozen values built from
rows.
"""

from __future__ import annotations

import enum


class WorkflowKind(enum.StrEnum):
    HEARTBEAT = "HEARTBEAT"
    CONTAINER = "CONTAINER"


class BuildStatus(enum.StrEnum):
    QUEUED = "QUEUED"
    STARTED = "STARTED"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELED = "CANCELED"


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
