"""Request and response shapes of the public API, shared by the HTTP and gRPC edges.

Validation is strict: wrong types are errors (no "5" for 5), unknown fields are rejected, and every
error names its field. The payload is checked against its kind by chronoverse.payloads.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar
from uuid import UUID

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    WithJsonSchema,
    field_validator,
)
from pydantic.json_schema import SkipJsonSchema

from chronoverse.domain import (
    BuildStatus,
    FailureKind,
    JobStatus,
    JobTrigger,
    LogStream,
    Workflow,
    WorkflowKind,
)
from chronoverse.errors import InvalidFieldsError
from chronoverse.jobs import Job
from chronoverse.payloads import field_errors
from chronoverse.secrets import mask_payload

MAX_INTERVAL_MINUTES = 10080
MAX_FAILURES_LIMIT = 100
DEFAULT_FAILURES_LIMIT = 3
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200

Name = Annotated[
    str,
    StringConstraints(
        min_length=1, max_length=200, strip_whitespace=True, pattern=r"^[^\x00-\x1f\x7f]+$"
    ),
]
Interval = Annotated[int, Field(ge=1, le=MAX_INTERVAL_MINUTES, description="Minutes between runs.")]
FailureLimit = Annotated[
    int,
    Field(
        ge=1,
        le=MAX_FAILURES_LIMIT,
        description="Consecutive failed jobs after which the workflow terminates itself.",
    ),
]
# Checked against the kind by chronoverse.payloads.parse_payload, which names the bad field.
RawPayload = Annotated[
    Any,
    WithJsonSchema({"oneOf": [{"type": "object"}, {"type": "string"}]}),
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Credentials(_Strict):
    email: str = Field(
        max_length=254,
        pattern=r"^[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f]+\.[^@\s\x00-\x1f\x7f]+$",
        examples=["ada@example.com"],
    )
    password: str = Field(min_length=8, max_length=1024)


class TokenOut(BaseModel):
    token: str
    token_type: Literal["bearer"] = "bearer"
    expires_at: datetime


class UserOut(BaseModel):
    id: UUID
    email: str
    created_at: datetime


KindIn = Literal["HEARTBEAT", "CONTAINER"]


class WorkflowCreate(_Strict):
    name: Name
    kind: KindIn
    payload: RawPayload = Field(
        default_factory=dict,
        description="A JSON object for the kind, or a JSON string holding one (the original "
        "Chronoverse API's form). See docs/api.md for every field, default and limit.",
    )
    interval: Interval
    max_consecutive_job_failures_allowed: FailureLimit = DEFAULT_FAILURES_LIMIT


class WorkflowUpdate(_Strict):
    """Fields to change; omitted fields keep their values. At least one is required."""

    name: Name | None = None
    payload: RawPayload | None = None
    interval: Interval | None = None
    max_consecutive_job_failures_allowed: FailureLimit | None = None
    # Not changeable and not in the schema: declared only so that sending it says why it is refused.
    kind: SkipJsonSchema[Any] = Field(None, exclude=True)

    @field_validator("kind", mode="before")
    @classmethod
    def _kind_is_fixed(cls, value: object) -> None:
        raise ValueError("cannot change: a workflow keeps the kind it was created with")


class WorkflowOut(BaseModel):
    id: UUID
    user_id: UUID
    name: str
    kind: WorkflowKind
    payload: dict[str, Any] = Field(
        description="The stored payload with every default. Secret values (CONTAINER `env`, "
        "HEARTBEAT `headers`) are write-only and shown as `***`; send `***` back in an update "
        "to keep a value."
    )
    interval: int
    max_consecutive_job_failures_allowed: int
    consecutive_job_failures_count: int
    build_status: BuildStatus
    build_error: str | None
    generation: int
    created_at: datetime
    updated_at: datetime
    terminated_at: datetime | None
    terminated_reason: str | None

    @classmethod
    def of(cls, workflow: Workflow) -> WorkflowOut:
        return cls(
            id=workflow.id,
            user_id=workflow.user_id,
            name=workflow.name,
            kind=workflow.kind,
            # Secret values are write-only: every response (and saved response) masks them.
            payload=mask_payload(workflow.kind, workflow.payload),
            interval=workflow.interval_minutes,
            max_consecutive_job_failures_allowed=workflow.max_consecutive_job_failures_allowed,
            consecutive_job_failures_count=workflow.consecutive_job_failures_count,
            build_status=workflow.build_status,
            build_error=workflow.build_error,
            generation=workflow.generation,
            created_at=workflow.created_at,
            updated_at=workflow.updated_at,
            terminated_at=workflow.terminated_at,
            terminated_reason=workflow.terminated_reason,
        )


class WorkflowPage(BaseModel):
    workflows: list[WorkflowOut]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null at the end."
    )


class JobOut(BaseModel):
    id: UUID
    workflow_id: UUID
    status: JobStatus
    trigger: JobTrigger
    scheduled_at: datetime
    queued_at: datetime | None
    started_at: datetime | None = Field(description="Start of the latest attempt.")
    completed_at: datetime | None = Field(description="When the job reached its final status.")
    attempt: int = Field(description="Attempts so far (SYSTEM failures are retried).")
    exit_code: int | None
    failure_kind: FailureKind | None = Field(
        description="USER failures count toward auto-termination; SYSTEM ones were retried first."
    )
    error: str | None

    @classmethod
    def of(cls, job: Job) -> JobOut:
        return cls(
            id=job.id,
            workflow_id=job.workflow_id,
            status=job.status,
            trigger=job.trigger,
            scheduled_at=job.scheduled_at,
            queued_at=job.queued_at,
            started_at=job.started_at,
            completed_at=job.finished_at,
            attempt=job.attempt,
            exit_code=job.exit_code,
            failure_kind=job.failure_kind,
            error=job.error,
        )


class JobPageOut(BaseModel):
    jobs: list[JobOut]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null at the end."
    )


class LogLineOut(BaseModel):
    seq: int = Field(description="Unique across both streams of the job, in output order.")
    stream: LogStream
    ts: datetime
    line: str


class LogPageOut(BaseModel):
    logs: list[LogLineOut]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null when no more lines are stored yet."
    )


class ErrorDetail(BaseModel):
    field: str
    message: str


class ErrorBody(BaseModel):
    code: str
    message: str
    details: list[ErrorDetail] = []


class ErrorOut(BaseModel):
    error: ErrorBody


M = TypeVar("M", bound=BaseModel)


def parse_model(model: type[M], data: object) -> M:
    """Validate ``data`` (a JSON value) into ``model``; raise InvalidFieldsError naming fields."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidFieldsError(field_errors(exc)) from exc


class VolumeOut(BaseModel):
    name: str
    docker_name: str = Field(description="The Docker volume behind it.")
    size_bytes: int | None = Field(
        description="Last measured size; null until the execution worker has measured it."
    )
    size_measured_at: datetime | None
    created_at: datetime = Field(description="When a job first mounted it.")
    last_used_at: datetime = Field(description="When a job last mounted it.")
    workflow_ids: list[UUID] = Field(description="Live workflows whose payload mounts it.")


class VolumeListOut(BaseModel):
    volumes: list[VolumeOut]


# --- list queries: one validator for the HTTP query string and the gRPC request ------------------


class _Query(BaseModel):
    # Lax (not strict): HTTP hands over query strings ("50" for 50); unknown names are refused.
    model_config = ConfigDict(extra="forbid", frozen=True)


PageCursor = Annotated[
    str | None,
    Field(max_length=512, description="`next_cursor` of the previous page."),
]
PageLimit = Annotated[int, Field(ge=1, le=MAX_PAGE_SIZE, description="Items per page.")]


class WorkflowQuery(_Query):
    kind: WorkflowKind | None = None
    build_status: BuildStatus | None = None
    terminated: bool | None = None
    name: Annotated[
        str | None, Field(max_length=200, description="Substring of the name, case-insensitive.")
    ] = None
    limit: PageLimit = DEFAULT_PAGE_SIZE
    cursor: PageCursor = None


class JobQuery(_Query):
    status: JobStatus | None = None
    trigger: JobTrigger | None = None
    limit: PageLimit = DEFAULT_PAGE_SIZE
    cursor: PageCursor = None


MAX_LOG_PAGE = 1000


class LogQuery(_Query):
    cursor: Annotated[
        str | None, Field(max_length=20, description="`next_cursor` of the previous page.")
    ] = None
    limit: Annotated[int, Field(ge=1, le=MAX_LOG_PAGE)] = 500
    stream: LogStream | None = None
