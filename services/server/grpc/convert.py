"""The gRPC edge's converters: the application layer's results as protobuf messages."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from uuid import UUID

from google.protobuf.timestamp_pb2 import Timestamp

from chronoverse.errors import FieldError, InvalidFieldsError
from chronoverse.logs import LogLine
from chronoverse.secrets import mask_payload
from chronoverse.v1 import jobs_pb2, workflows_pb2
from services.server.logs import LogEnd
from services.server.schemas import (
    FirePageOut,
    JobEventsOut,
    JobOut,
    LogPageOut,
    SchedulePreviewOut,
    WorkflowOut,
)


def timestamp(value: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def uuid(value: str, field: str = "id") -> UUID:
    """A UUID field of a request; an invalid one is INVALID_ARGUMENT naming the field."""
    try:
        return UUID(value)
    except ValueError as exc:
        raise InvalidFieldsError([FieldError(field, "must be a UUID")]) from exc


def workflow(data: WorkflowOut | dict[str, Any]) -> workflows_pb2.Workflow:
    """A workflow result, or its JSON form (what idempotent replays store), as a message."""
    out = data if isinstance(data, WorkflowOut) else WorkflowOut.model_validate(data)
    message = workflows_pb2.Workflow(
        id=str(out.id),
        user_id=str(out.user_id),
        name=out.name,
        kind=out.kind.value,
        # Masked by WorkflowOut.of already; again here for responses saved before masking.
        payload_json=json.dumps(mask_payload(out.kind, out.payload)),
        timezone=out.timezone,
        catchup=out.catchup.value,
        state=out.state.value,
        max_consecutive_job_failures_allowed=out.max_consecutive_job_failures_allowed,
        consecutive_job_failures_count=out.consecutive_job_failures_count,
        retain_logs=out.retain_logs,
        build_status=out.build_status.value,
        generation=out.generation,
        created_at=timestamp(out.created_at),
        updated_at=timestamp(out.updated_at),
    )
    if out.build_error is not None:
        message.build_error = out.build_error
    if out.terminated_at is not None:
        message.terminated_at.CopyFrom(timestamp(out.terminated_at))
    if out.terminated_reason is not None:
        message.terminated_reason = out.terminated_reason
    if out.interval is not None:
        message.interval = out.interval
    if out.cron is not None:
        message.cron = out.cron
    if out.dst is not None:
        message.dst.CopyFrom(workflows_pb2.DstPolicy(gap=out.dst.gap, overlap=out.dst.overlap))
    if out.catchup_window_minutes is not None:
        message.catchup_window_minutes = out.catchup_window_minutes
    if out.paused_at is not None:
        message.paused_at.CopyFrom(timestamp(out.paused_at))
    if out.next_run_at is not None:
        message.next_run_at.CopyFrom(timestamp(out.next_run_at))
    return message


def schedule_preview(preview: SchedulePreviewOut) -> workflows_pb2.SchedulePreview:
    return workflows_pb2.SchedulePreview(
        next=[
            workflows_pb2.Fire(
                at=timestamp(f.at),
                local=f.local.isoformat(),
                note=f.note.value if f.note is not None else None,
            )
            for f in preview.next
        ]
    )


def fire_page(page: FirePageOut) -> workflows_pb2.ListFiresResponse:
    return workflows_pb2.ListFiresResponse(
        fires=[
            workflows_pb2.FireEntry(
                scheduled_at=timestamp(f.scheduled_at),
                first_scheduled_at=timestamp(f.first_scheduled_at),
                outcome=f.outcome,
                job_id=str(f.job_id) if f.job_id is not None else None,
                slots=f.slots,
                detail=f.detail,
            )
            for f in page.fires
        ],
        next_cursor=page.next_cursor or "",
    )


def job(data: JobOut | dict[str, Any]) -> jobs_pb2.Job:
    """A job result, or its JSON form, as a message."""
    out = data if isinstance(data, JobOut) else JobOut.model_validate(data)
    message = jobs_pb2.Job(
        id=str(out.id),
        workflow_id=str(out.workflow_id),
        status=out.status.value,
        trigger=out.trigger.value,
        scheduled_at=timestamp(out.scheduled_at),
        attempt=out.attempt,
        logs_incomplete=out.logs_incomplete,
    )
    for field in ("queued_at", "started_at", "completed_at"):
        value = getattr(out, field)
        if value is not None:
            getattr(message, field).CopyFrom(timestamp(value))
    if out.exit_code is not None:
        message.exit_code = out.exit_code
    if out.failure_kind is not None:
        message.failure_kind = out.failure_kind.value
    if out.error is not None:
        message.error = out.error
    return message


def job_events(history: JobEventsOut) -> jobs_pb2.ListJobEventsResponse:
    return jobs_pb2.ListJobEventsResponse(
        events=[
            jobs_pb2.JobEvent(type=e.type.value, at=timestamp(e.at), data_json=json.dumps(e.data))
            for e in history.events
        ],
        truncated=history.truncated,
    )


def log_line(line: LogLine, attempt: int) -> jobs_pb2.LogEvent:
    return jobs_pb2.LogEvent(
        line=jobs_pb2.LogLine(
            attempt=attempt,
            seq=line.seq,
            stream=line.stream.value,
            ts=timestamp(line.ts),
            line=line.line,
        )
    )


def log_page(page: LogPageOut) -> jobs_pb2.ListLogsResponse:
    return jobs_pb2.ListLogsResponse(
        attempt=page.attempt,
        logs=[
            jobs_pb2.LogLine(
                attempt=x.attempt, seq=x.seq, stream=x.stream.value, ts=timestamp(x.ts), line=x.line
            )
            for x in page.logs
        ],
        next_cursor=page.next_cursor or "",
        incomplete=page.incomplete,
    )


def log_end(end: LogEnd) -> jobs_pb2.LogEvent:
    return jobs_pb2.LogEvent(
        end=jobs_pb2.LogEnd(attempt=end.attempt, last_seq=end.last_seq, incomplete=end.incomplete)
    )
