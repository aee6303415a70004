"""A job's history: the event types that migrations/0012_job_events.sql appends, and the value
read back from a ``job_events`` row.

The triggers on ``jobs`` write every event in the transaction of the transition it records; no
Python code writes one. docs/notifications.md ("Job history") gives each type's data.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

# The most events a reader is given at once: the newest ones (a job that waits unclaimed for
# days is republished again and again; its end is what explains it).
MAX_JOB_EVENTS = 1000


class JobEventType(enum.StrEnum):
    CREATED = "created"
    PUBLISHED = "published"
    REPUBLISHED = "republished"
    CLAIMED = "claimed"
    CONTAINER_STARTED = "container_started"
    LEASE_LOST = "lease_lost"
    LEASE_RECOVERED = "lease_recovered"
    LOG_GAP = "log_gap"
    RETRY_SCHEDULED = "retry_scheduled"
    FINISHED = "finished"
    CANCELED = "canceled"


@dataclass(frozen=True, kw_only=True)
class JobEvent:
    type: JobEventType
    at: datetime
    data: dict[str, Any]

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> JobEvent:
        return cls(type=JobEventType(row["type"]), at=row["at"], data=dict(row["data"]))


@dataclass(frozen=True, kw_only=True)
class JobHistory:
    """A job's events, oldest first; ``truncated`` when older ones were left out."""

    events: list[JobEvent]
    truncated: bool
