"""Jobs: the frozen value read from a row, and the `jobs` topic message."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from chronoverse.domain import FailureKind, JobStatus, JobTrigger
from chronoverse.errors import MalformedMessageError
from chronoverse.messages import decode_object

JOB_MESSAGE_VERSION = 1


@dataclass(frozen=True, kw_only=True)
class Job:
    id: UUID
    workflow_id: UUID
    user_id: UUID
    trigger: JobTrigger
    status: JobStatus
    scheduled_at: datetime
    created_at: datetime
    queued_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    attempt: int
    lease_token: int
    exit_code: int | None
    failure_kind: FailureKind | None
    error: str | None
    logs_incomplete: bool = False  # the final attempt's stored log has a gap

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Job:
        return cls(
            id=row["id"],
            workflow_id=row["workflow_id"],
            user_id=row["user_id"],
            trigger=JobTrigger(row["trigger"]),
            status=JobStatus(row["status"]),
            scheduled_at=row["scheduled_at"],
            created_at=row["created_at"],
            queued_at=row["queued_at"],
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            attempt=row["attempt"],
            lease_token=row["lease_token"],
            exit_code=row["exit_code"],
            failure_kind=FailureKind(row["failure_kind"]) if row["failure_kind"] else None,
            error=row["error"],
            logs_incomplete=row.get("logs_incomplete", False),
        )


_JOB_READY = (
    '{{"v":' + str(JOB_MESSAGE_VERSION) + ',"type":"job.ready","job_id":"{}","workflow_id":"{}"}}'
)


@dataclass(frozen=True, kw_only=True)
class JobMessage:
    """``{"v": 1, "type": "job.ready", "job_id", "workflow_id"}`` on the `jobs` topic."""

    job_id: UUID
    workflow_id: UUID

    def encode(self) -> bytes:
        # The bytes encode() makes of the message object, formatted directly: a UUID's text needs
        # no JSON escaping, and the scheduler encodes one message per job (json.dumps was a quarter
        # of its own CPU). tests/unit/test_messages.py pins it to encode()'s output.
        return _JOB_READY.format(self.job_id, self.workflow_id).encode()


def decode_job_message(key: bytes | None, value: bytes | None) -> JobMessage:
    data = decode_object(key, value)
    if data.get("v") != JOB_MESSAGE_VERSION or data.get("type") != "job.ready":
        raise MalformedMessageError(
            f"unsupported job message v={data.get('v')!r} type={data.get('type')!r}"
        )
    try:
        return JobMessage(
            job_id=UUID(str(data["job_id"])), workflow_id=UUID(str(data["workflow_id"]))
        )
    except (KeyError, ValueError) as exc:
        raise MalformedMessageError(f"bad job message: {exc}") from exc
