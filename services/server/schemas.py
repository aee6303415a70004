"""Request and response shapes of the public API, shared by the HTTP and gRPC edges.

Validation is strict: wrong types are errors (no "5" for 5), unknown fields are rejected, and every
error names its field. The payload is checked against its kind by chronoverse.payloads.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar
from uuid import UUID

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    field_validator,
)
from pydantic.json_schema import JsonSchemaValue, SkipJsonSchema
from pydantic_core import CoreSchema

from chronoverse.accounts import EMAIL_PATTERN
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
from chronoverse.payloads import (
    JSON_INTEGER,
    ContainerPayload,
    ContainerPolicy,
    Endpoint,
    HeartbeatPayload,
    field_errors,
)
from chronoverse.secrets import mask_payload

MAX_INTERVAL_MINUTES = 10080
MAX_FAILURES_LIMIT = 100
DEFAULT_FAILURES_LIMIT = 3
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200

# Python's str.isspace(), spelled out: JSON Schema's \s is not quite the same set.
_SPACE = r"\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
# No control characters, and something besides spaces, which are stripped from both ends.
NAME_PATTERN = rf"^[^\x00-\x1f\x7f]*[^\x00-\x1f\x7f{_SPACE}][^\x00-\x1f\x7f]*$"
Name = Annotated[
    str,
    StringConstraints(max_length=200, pattern=NAME_PATTERN),
    AfterValidator(str.strip),
    Field(description="Stored without leading and trailing spaces."),
]
Interval = Annotated[
    int, Field(ge=1, le=MAX_INTERVAL_MINUTES, description="Minutes between runs."), JSON_INTEGER
]
FailureLimit = Annotated[
    int,
    Field(
        ge=1,
        le=MAX_FAILURES_LIMIT,
        description="Consecutive failed jobs after which the workflow terminates itself.",
    ),
    JSON_INTEGER,
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


# --- payloads as the OpenAPI document describes them ----------------------------------------------
# Requests are validated by WorkflowCreate and WorkflowUpdate, then by chronoverse.payloads against
# the workflow's kind and the operator's policy. These models only describe that validation, so a
# client (or schemathesis) can tell a valid payload from the document: the kind picks the payload's
# shape, and a HEARTBEAT with HTTP options needs an endpoint.


class LivenessPayload(_Strict):
    """A HEARTBEAT with nothing to request: its jobs prove that the schedule runs."""

    kind: Literal["HEARTBEAT"] | None = None
    endpoint: None = None


class HttpCheckPayload(HeartbeatPayload):
    """A HEARTBEAT that requests ``endpoint`` and compares the response's status."""

    endpoint: Endpoint = Field(description=HeartbeatPayload.model_fields["endpoint"].description)


HeartbeatPayloadIn = LivenessPayload | HttpCheckPayload
PAYLOAD_DOC = (
    "Secret values (HEARTBEAT `headers`, CONTAINER `env`) may not be `***` unless the workflow "
    "stores a value for that key, which `***` keeps. Deprecated and not described here: the "
    "object as JSON text, as the original Chronoverse API sent it. See docs/api.md for every "
    "field and default."
)


class HeartbeatWorkflowCreate(_Strict):
    name: Name
    kind: Literal["HEARTBEAT"]
    payload: HeartbeatPayloadIn | None = Field(
        default_factory=dict, description=f"Empty or null: a liveness job. {PAYLOAD_DOC}"
    )
    interval: Interval
    max_consecutive_job_failures_allowed: FailureLimit = DEFAULT_FAILURES_LIMIT


class ContainerWorkflowCreate(_Strict):
    name: Name
    kind: Literal["CONTAINER"]
    payload: ContainerPayload = Field(description=PAYLOAD_DOC)
    interval: Interval
    max_consecutive_job_failures_allowed: FailureLimit = DEFAULT_FAILURES_LIMIT


def with_operator_limits(document: dict[str, Any], policy: ContainerPolicy) -> dict[str, Any]:
    """The OpenAPI ``document`` with the operator's CONTAINER bounds, which are settings."""
    schemas = document["components"]["schemas"]
    resources = schemas["ContainerResources"]["properties"]
    container = schemas["ContainerPayload"]["properties"]
    for limits, field, ceiling in (
        (resources, "memory_mb", policy.max_memory_mb),
        (resources, "cpus", policy.max_cpus),
        (resources, "pids", policy.max_pids),
        (container, "timeout_seconds", policy.max_timeout_s),
    ):
        limits[field]["maximum"] = min(limits[field]["maximum"], ceiling)
    network = next(s for s in container["network"]["anyOf"] if s.get("type") == "string")
    network["enum"] = list(policy.networks)
    container["volumes"]["maxItems"] = min(container["volumes"]["maxItems"], policy.max_volumes)
    return document


_CREATE_DOC = TypeAdapter(
    Annotated[HeartbeatWorkflowCreate | ContainerWorkflowCreate, Field(discriminator="kind")]
)
_UPDATE_PAYLOAD_DOC = TypeAdapter(HeartbeatPayloadIn | ContainerPayload | None)


class Credentials(_Strict):
    email: str = Field(
        max_length=254,
        pattern=EMAIL_PATTERN,
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
    """A HEARTBEAT or CONTAINER workflow to create; the kind decides the payload's shape."""

    name: Name
    kind: KindIn
    # A JSON object for the kind, or JSON text holding one: chronoverse.payloads checks it.
    payload: Any = Field(default_factory=dict)
    interval: Interval
    max_consecutive_job_failures_allowed: FailureLimit = DEFAULT_FAILURES_LIMIT

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return handler(_CREATE_DOC.core_schema)


class WorkflowUpdate(_Strict):
    """Fields to change; omitted fields keep their values. At least one is required."""

    name: Name | None = None
    payload: Any = None
    interval: Interval | None = None
    max_consecutive_job_failures_allowed: FailureLimit | None = None
    # Not changeable and not in the schema: declared only so that sending it says why it is refused.
    kind: SkipJsonSchema[Any] = Field(None, exclude=True)

    @field_validator("kind", mode="before")
    @classmethod
    def _kind_is_fixed(cls, value: object) -> None:
        raise ValueError("cannot change: a workflow keeps the kind it was created with")

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler.resolve_ref_schema(handler(core_schema))
        schema["properties"]["payload"] = {
            **handler(_UPDATE_PAYLOAD_DOC.core_schema),
            "description": "For the workflow's kind; null keeps the payload. " + PAYLOAD_DOC,
        }
        # At least one change: a field that is present (payload: not null).
        schema["anyOf"] = [
            {"required": ["name"]},
            {"required": ["interval"]},
            {"required": ["max_consecutive_job_failures_allowed"]},
            {"required": ["payload"], "properties": {"payload": {"not": {"type": "null"}}}},
        ]
        return schema


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
    logs_incomplete: bool = Field(
        False,
        description="Lines of the job's final attempt were lost, or its log end marker never "
        "arrived: its stored log has a gap.",
    )

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
            logs_incomplete=job.logs_incomplete,
        )


class JobPageOut(BaseModel):
    jobs: list[JobOut]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null at the end."
    )


class LogLineOut(BaseModel):
    attempt: int = Field(description="The attempt that printed the line.")
    seq: int = Field(
        description="Unique across both streams of the attempt, in output order; each attempt "
        "starts at 0."
    )
    stream: LogStream
    ts: datetime
    line: str


class LogPageOut(BaseModel):
    attempt: int = Field(description="The attempt whose lines these are (default: the latest).")
    logs: list[LogLineOut]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null when no more lines are stored yet."
    )
    incomplete: bool = Field(
        description="Lines of this attempt are known to be missing: it is the job's final "
        "attempt, and lines were lost in shipping or its end marker never arrived."
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


# Every string of this shape decodes to a position (store/pagination.py), so the document can
# state exactly which cursors are valid; a cursor no page returned is not an error but a position.
PAGE_CURSOR_PATTERN = r"^[0-9]{1,17}_[0-9a-f]{32}$"
PageCursor = Annotated[
    str | None,
    Field(pattern=PAGE_CURSOR_PATTERN, description="`next_cursor` of the previous page."),
]
PageLimit = Annotated[int, Field(ge=1, le=MAX_PAGE_SIZE, description="Items per page.")]


class WorkflowQuery(_Query):
    kind: WorkflowKind | None = None
    build_status: BuildStatus | None = None
    terminated: bool | None = None
    name: Annotated[
        str | None,
        Field(
            max_length=200,
            pattern=r"^[^\x00]*$",
            description="Substring of the name, case-insensitive.",
        ),
    ] = None
    limit: PageLimit = DEFAULT_PAGE_SIZE
    cursor: PageCursor = None


class JobQuery(_Query):
    status: JobStatus | None = None
    trigger: JobTrigger | None = None
    limit: PageLimit = DEFAULT_PAGE_SIZE
    cursor: PageCursor = None


MAX_LOG_PAGE = 1000
MAX_ATTEMPT = 2**31 - 1
# A position in a job's logs as text (a log cursor, a Last-Event-ID): `<attempt>.<seq>`, or a
# plain seq (of the attempt asked for, else the latest); seq -1 is before the first line.
LOG_POSITION_PATTERN = r"^(?:[0-9]{1,9}\.)?(?:-1|[0-9]{1,18})$"


class LogQuery(_Query):
    attempt: Annotated[
        int | None,
        Field(ge=1, le=MAX_ATTEMPT, description="The attempt to read; default: the latest."),
    ] = None
    cursor: Annotated[
        str | None,
        Field(pattern=LOG_POSITION_PATTERN, description="`next_cursor` of the previous page."),
    ] = None
    limit: Annotated[int, Field(ge=1, le=MAX_LOG_PAGE)] = 500
    stream: LogStream | None = None
