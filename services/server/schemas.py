"""Request and response shapes of the public API, shared by the HTTP and gRPC edges.

Validation is strict: wrong types are errors (no "5" for 5), unknown fields are rejected, and every
error names its field. The payload is checked against its kind by chronoverse.payloads.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar
from uuid import UUID

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    JsonValue,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
    field_validator,
)
from pydantic.json_schema import JsonSchemaValue, SkipJsonSchema
from pydantic_core import CoreSchema

from chronoverse.accounts import EMAIL_PATTERN
from chronoverse.alerts import EntityType as NotificationEntityType
from chronoverse.alerts import Kind as NotificationKind
from chronoverse.domain import (
    BuildStatus,
    FailureKind,
    JobStatus,
    JobTrigger,
    LogStream,
    Workflow,
    WorkflowKind,
    WorkflowState,
)
from chronoverse.errors import FieldError, InvalidFieldsError
from chronoverse.job_events import MAX_JOB_EVENTS, JobEvent, JobEventType, JobHistory
from chronoverse.jobs import Job
from chronoverse.payloads import (
    JSON_INTEGER,
    MAX_PAYLOAD_BYTES,
    WEBHOOK_URL_PATTERN,
    ContainerPayload,
    ContainerPolicy,
    Endpoint,
    HeartbeatPayload,
    field_errors,
)
from chronoverse.schedules import (
    CRON_PATTERN,
    MAX_CATCHUP_WINDOW_MINUTES,
    MAX_CRON_CHARS,
    Catchup,
    CronSchedule,
    DstGap,
    DstOverlap,
    DstPolicy,
    FireNote,
    IntervalSchedule,
    Schedule,
    ScheduleError,
    known_zones,
    parse_cron,
    parse_timezone,
)
from chronoverse.secrets import mask_payload
from chronoverse.webhooks import MAX_URL_CHARS as MAX_WEBHOOK_URL_CHARS
from chronoverse.webhooks import DeliveryStatus
from chronoverse.webhooks import url_problem as webhook_url_problem

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
RetainLogs = Annotated[
    bool,
    Field(
        description="Keep the jobs' log lines. false: live viewers still see every line (and can "
        "resume), but each attempt's lines are deleted shortly after it ends "
        "(CHRONOVERSE_LOG_PURGE_GRACE_S of the log processor)."
    ),
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
    f"At most {MAX_PAYLOAD_BYTES} bytes of JSON. Secret values (HEARTBEAT `headers`, CONTAINER "
    "`env`) may not be `***` unless the workflow stores a value for that key, which `***` keeps. "
    "Deprecated and not described here: the object as JSON text, as the original Chronoverse API "
    "sent it. See docs/api.md for every field and default."
)


# --- schedules: an interval, or a cron expression in a time zone (chronoverse.schedules) ----------

CronExpression = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_CRON_CHARS),
    # The pattern is checked by parse_cron, which says in words what is wrong.
    WithJsonSchema(
        {"type": "string", "minLength": 1, "maxLength": MAX_CRON_CHARS, "pattern": CRON_PATTERN}
    ),
    Field(
        description="5 fields (minute hour day-of-month month day-of-week, Debian cron's syntax) "
        "or a macro: @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly. Read in "
        "`timezone`. Exactly one of `interval` and `cron`. See docs/scheduling.md.",
        examples=["0 3 * * *", "*/15 * * * 1-5", "@daily"],
    ),
]
TimeZone = Annotated[
    str,
    Field(
        max_length=64,
        description="An IANA time zone name for `cron` (default UTC).",
        json_schema_extra={"enum": sorted(known_zones())},
        examples=["Europe/Riga"],
    ),
]
CatchupWindow = Annotated[
    int,
    Field(
        ge=1,
        le=MAX_CATCHUP_WINDOW_MINUTES,
        description="With `catchup: all`: slots older than this are not run (default 60).",
    ),
    JSON_INTEGER,
]


class DstIn(_Strict):
    """What a cron schedule does around a daylight-saving change (fixed-time expressions)."""

    # Literals, not the enums: the strict models take JSON strings for them.
    gap: Literal["shift", "skip"] = Field(
        "shift",
        description="A local time that does not exist: `shift` runs it just after the gap, "
        "`skip` does not run it that day.",
    )
    overlap: Literal["once", "twice"] = Field(
        "once",
        description="A local time that happens twice: `once` runs the first, `twice` runs both.",
    )


class ScheduleIn(_Strict):
    """The schedule fields of a workflow: exactly one of `interval` and `cron`."""

    interval: Interval | None = None
    cron: CronExpression | None = None
    timezone: TimeZone | None = None
    dst: DstIn | None = Field(None, description="For `cron` only; default shift and once.")

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        return None if value is None else _schedule_field(parse_cron, value)

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str | None) -> str | None:
        return None if value is None else _schedule_field(parse_timezone, value)


class CatchupIn(_Strict):
    catchup: Literal["latest", "none", "all"] | None = Field(
        None,
        description="Slots missed (the scheduler was down, or the workflow paused): `latest` "
        "runs the latest (default), `none` none, `all` each within `catchup_window_minutes`.",
    )
    catchup_window_minutes: CatchupWindow | None = None


def _schedule_field(parse: Any, value: str) -> str:
    try:
        return str(parse(value))
    except ScheduleError as exc:
        raise ValueError(exc.message) from exc


def _given(name: str) -> dict[str, JsonValue]:
    # Present and not null: a null field counts as omitted.
    return {"required": [name], "properties": {name: {"not": {"type": "null"}}}}


def _implies(condition: JsonValue, consequence: JsonValue) -> dict[str, JsonValue]:
    return {"anyOf": [{"not": condition}, consequence]}


# What plan_schedule checks across fields, for a new schedule (create, preview): exactly one of
# `interval` and `cron`; `timezone` and `dst` only with `cron`; a catch-up window only with `all`.
ONE_SCHEDULE: list[JsonValue] = [
    {"oneOf": [_given("interval"), _given("cron")]},
    _implies({"anyOf": [_given("timezone"), _given("dst")]}, _given("cron")),
    _implies(
        _given("catchup_window_minutes"),
        {"required": ["catchup"], "properties": {"catchup": {"const": "all"}}},
    ),
]


class HeartbeatWorkflowCreate(ScheduleIn, CatchupIn):
    model_config = ConfigDict(json_schema_extra={"allOf": ONE_SCHEDULE})

    name: Name
    kind: Literal["HEARTBEAT"]
    payload: HeartbeatPayloadIn | None = Field(
        None, description=f"Omitted, null or empty: a liveness job. {PAYLOAD_DOC}"
    )
    max_consecutive_job_failures_allowed: FailureLimit = DEFAULT_FAILURES_LIMIT
    retain_logs: RetainLogs = True


class ContainerWorkflowCreate(ScheduleIn, CatchupIn):
    model_config = ConfigDict(json_schema_extra={"allOf": ONE_SCHEDULE})

    name: Name
    kind: Literal["CONTAINER"]
    payload: ContainerPayload = Field(description=PAYLOAD_DOC)
    max_consecutive_job_failures_allowed: FailureLimit = DEFAULT_FAILURES_LIMIT
    retain_logs: RetainLogs = True


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


class ApiTokenOut(BaseModel):
    """A token in force, as its owner sees it on the profile (never the token itself)."""

    id: UUID
    name: str
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None


class ApiTokenCreate(_Strict):
    name: str = Field(min_length=1, max_length=100, examples=["ci"])


class UserOut(BaseModel):
    id: UUID
    email: str
    created_at: datetime


KindIn = Literal["HEARTBEAT", "CONTAINER"]


class WorkflowCreate(ScheduleIn, CatchupIn):
    """A HEARTBEAT or CONTAINER workflow to create; the kind decides the payload's shape."""

    name: Name
    kind: KindIn
    # A JSON object for the kind, or JSON text holding one: chronoverse.payloads checks it.
    payload: Any = Field(default_factory=dict)
    max_consecutive_job_failures_allowed: FailureLimit = DEFAULT_FAILURES_LIMIT
    retain_logs: RetainLogs = True

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return handler(_CREATE_DOC.core_schema)


class WorkflowUpdate(ScheduleIn, CatchupIn):
    """Fields to change; omitted fields keep their values. At least one is required. `interval`
    or `cron` replaces the schedule (not both); `timezone` and `dst` apply to a cron schedule,
    given or kept, and `catchup_window_minutes` to catch-up `all`, given or kept."""

    name: Name | None = None
    payload: Any = None
    max_consecutive_job_failures_allowed: FailureLimit | None = None
    retain_logs: RetainLogs | None = None
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
        schema["not"] = {"allOf": [_given("interval"), _given("cron")]}
        schema["anyOf"] = [
            {"required": ["name"]},
            {"required": ["interval"]},
            {"required": ["cron"]},
            {"required": ["timezone"]},
            {"required": ["dst"]},
            {"required": ["catchup"]},
            {"required": ["catchup_window_minutes"]},
            {"required": ["max_consecutive_job_failures_allowed"]},
            {"required": ["retain_logs"]},
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
    interval: int | None = Field(description="Minutes between runs; null for a cron schedule.")
    cron: str | None = Field(description="The cron expression (macros expanded); or null.")
    timezone: str
    dst: DstIn | None = Field(description="The DST policy of a cron schedule; null otherwise.")
    catchup: Catchup
    catchup_window_minutes: int | None
    state: WorkflowState
    paused_at: datetime | None
    next_run_at: datetime | None = Field(description="The next slot; null once terminated.")
    max_consecutive_job_failures_allowed: int
    consecutive_job_failures_count: int
    retain_logs: bool = Field(
        True,  # responses saved (Idempotency-Key) before the field existed
        description="Whether the jobs' log lines are kept (false: only while live viewers may "
        "resume).",
    )
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
            cron=workflow.cron,
            timezone=workflow.timezone,
            dst=DstIn(gap=workflow.dst.gap.value, overlap=workflow.dst.overlap.value)
            if workflow.cron is not None
            else None,
            catchup=workflow.catchup.mode,
            catchup_window_minutes=workflow.catchup.window_minutes,
            state=workflow.state,
            paused_at=workflow.paused_at,
            next_run_at=workflow.next_run_at,
            max_consecutive_job_failures_allowed=workflow.max_consecutive_job_failures_allowed,
            consecutive_job_failures_count=workflow.consecutive_job_failures_count,
            retain_logs=workflow.retain_logs,
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


class WorkflowCountersOut(BaseModel):
    """The caller's workflows by state, and the live ones failing: their last finished job
    failed, or failures are counting toward their limit."""

    active: int
    paused: int
    terminated: int
    failing: int


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


class JobEventOut(BaseModel):
    type: JobEventType = Field(description="What happened (docs/notifications.md, Job history).")
    at: datetime
    data: dict[str, Any] = Field(description="The facts of the event; the keys depend on type.")

    @classmethod
    def of(cls, event: JobEvent) -> JobEventOut:
        return cls(type=event.type, at=event.at, data=event.data)


class JobEventsOut(BaseModel):
    events: list[JobEventOut] = Field(
        description=f"Oldest first; at most the newest {MAX_JOB_EVENTS}."
    )
    truncated: bool = Field(description=f"Older events than these {MAX_JOB_EVENTS} were left out.")

    @classmethod
    def of(cls, history: JobHistory) -> JobEventsOut:
        return cls(events=[JobEventOut.of(e) for e in history.events], truncated=history.truncated)


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


# --- webhooks ------------------------------------------------------------------------------------

WebhookEventIn = Literal[
    "workflow.failing", "workflow.recovered", "workflow.terminated", "build.failed"
]


class WebhookCreate(_Strict):
    """An endpoint to POST signed state flips to."""

    url: str = Field(
        min_length=1,
        max_length=MAX_WEBHOOK_URL_CHARS,
        description="An http:// or https:// URL without credentials or #fragment; its address "
        "must pass the egress policy (as HEARTBEAT endpoints do), checked again before every "
        "attempt. An IP literal the policy allows is accepted too but not described.",
        json_schema_extra={"pattern": WEBHOOK_URL_PATTERN},
    )
    events: list[WebhookEventIn] = Field(
        min_length=1,
        max_length=4,
        description="The events to send, each at most once.",
        json_schema_extra={"uniqueItems": True},
    )
    workflow_id: UUID | None = Field(
        None,
        strict=False,  # JSON has no UUID type: a UUID string
        description="Only this workflow of yours; null (the default): all of them.",
    )

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if (problem := webhook_url_problem(value)) is not None:
            raise ValueError(problem)
        return value

    @field_validator("events")
    @classmethod
    def _events(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("lists an event twice")
        return value


class WebhookOut(BaseModel):
    id: UUID
    url: str
    events: list[str]
    workflow_id: UUID | None
    created_at: datetime


class WebhookCreatedOut(WebhookOut):
    secret: str = Field(
        description="The signing secret (`whsec_` and base64), shown only in this response: "
        "verify deliveries with it (Standard Webhooks)."
    )


class WebhookPage(BaseModel):
    webhooks: list[WebhookOut]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null at the end."
    )


class WebhookAttemptOut(BaseModel):
    attempt: int
    attempted_at: datetime
    status_code: int | None = Field(description="The receiver's answer; null when there was none.")
    duration_ms: int
    error: str | None = Field(
        description="Why there was no answer: a timeout, a refused connection, or an address "
        "the egress policy blocks (then no request was sent)."
    )


class WebhookDeliveryOut(BaseModel):
    id: UUID = Field(description="The `webhook-id` header: the same on every attempt.")
    event: str
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime | None = Field(description="When PENDING: the next attempt.")
    created_at: datetime
    finished_at: datetime | None
    payload: dict[str, Any]
    attempt_log: list[WebhookAttemptOut] = Field(description="Every attempt, oldest first.")


class WebhookDeliveryPage(BaseModel):
    deliveries: list[WebhookDeliveryOut] = Field(description="Newest first.")
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null at the end."
    )


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


class WebhookQuery(_Query):
    limit: PageLimit = DEFAULT_PAGE_SIZE
    cursor: PageCursor = None


MAX_LOG_PAGE = 1000
MAX_ATTEMPT = 2**31 - 1
# A position in a job's logs as text (a log cursor, a Last-Event-ID): `<attempt>.<seq>`, or a
# plain seq (of the attempt asked for, else the latest); seq -1 is before the first line.
LOG_POSITION_PATTERN = r"^(?:[1-9][0-9]{0,8}\.)?(?:-1|[0-9]{1,18})$"


MAX_LOG_SEARCH = 200
LogSearch = Annotated[
    str | None,
    Field(
        min_length=1,
        max_length=MAX_LOG_SEARCH,
        pattern=r"^[^\x00]*$",
        description="Only lines containing this text, case-insensitive (`%` and `_` are plain "
        f"characters); 1 to {MAX_LOG_SEARCH} characters.",
    ),
]


class LogQuery(_Query):
    attempt: Annotated[
        int | None,
        Field(
            ge=1,
            le=MAX_ATTEMPT,
            description="The attempt to read, one the job has had (1 to its `attempt`); "
            "default: the latest.",
        ),
    ] = None
    cursor: Annotated[
        str | None,
        Field(
            pattern=LOG_POSITION_PATTERN,
            description="`next_cursor` of the previous page; with `attempt`, of that attempt.",
        ),
    ] = None
    limit: Annotated[int, Field(ge=1, le=MAX_LOG_PAGE)] = 500
    stream: LogStream | None = None
    q: LogSearch = None


class LogDownloadQuery(_Query):
    format: Annotated[
        Literal["txt", "json", "jsonl"],
        Field(
            description="`txt`: the lines as printed; `jsonl`: one `{attempt, seq, stream, ts, "
            "line}` object a line; `json`: `{job_id, attempt, logs: [...], incomplete}`."
        ),
    ] = "txt"
    attempt: Annotated[
        int | None,
        Field(ge=1, le=MAX_ATTEMPT, description="The attempt to download; default: the latest."),
    ] = None
    stream: LogStream | None = None
    q: LogSearch = None


# --- idempotent POSTs, and the links between operations, as the document states them ----------

IDEMPOTENCY_KEY_PATTERN = r"^[\x21-\x7e]{1,255}$"
IDEMPOTENCY_KEY_DOC = (
    "1 to 255 printable ASCII characters without spaces (`!` to `~`). The first response for a "
    "key is kept for CHRONOVERSE_IDEMPOTENCY_KEY_TTL_S (24 hours by default): the same key with "
    "the same request gets it back unchanged, marked `Idempotent-Replayed: true`, even if the "
    "resource it names has changed or been deleted since; the same key with another request is a "
    "409 `idempotency_key_reused`."
)
_REPLAYED = {
    "Idempotent-Replayed": {
        "description": "Present on a response stored for this Idempotency-Key and sent again.",
        "schema": {"type": "string", "enum": ["true"]},
    }
}


def _link(path: str, method: str, **parameters: str) -> dict[str, Any]:
    """An OpenAPI link to the operation at ``path`` and ``method``, its parameters taken from
    the response (``$response.body#/…``)."""
    pointer = path.replace("~", "~0").replace("/", "~1")
    return {"operationRef": f"#/paths/{pointer}/{method}", "parameters": parameters}


_WORKFLOW = "/workflows/{workflow_id}"
_JOB = "/workflows/{workflow_id}/jobs/{job_id}"
ResponsesDoc = dict[int | str, dict[str, Any]]
WORKFLOW_CREATED: ResponsesDoc = {
    201: {
        "headers": _REPLAYED,
        "links": {
            name: _link(path, method, workflow_id="$response.body#/id")
            for name, path, method in (
                ("GetWorkflow", _WORKFLOW, "get"),
                ("UpdateWorkflow", _WORKFLOW, "put"),
                ("TerminateWorkflow", f"{_WORKFLOW}/terminate", "post"),
                ("DeleteWorkflow", _WORKFLOW, "delete"),
                ("RunWorkflow", f"{_WORKFLOW}/jobs", "post"),
                ("ListJobs", f"{_WORKFLOW}/jobs", "get"),
            )
        },
    }
}
JOB_CREATED: ResponsesDoc = {
    201: {
        "headers": _REPLAYED,
        "links": {
            "GetJob": _link(
                _JOB, "get", workflow_id="$response.body#/workflow_id", job_id="$response.body#/id"
            ),
            "JobLogs": _link(
                f"{_JOB}/logs",
                "get",
                workflow_id="$response.body#/workflow_id",
                job_id="$response.body#/id",
            ),
            "LogsByJob": _link("/jobs/{job_id}/logs", "get", job_id="$response.body#/id"),
        },
    }
}
WORKFLOW_TERMINATED: ResponsesDoc = {200: {"headers": _REPLAYED}}


# --- schedules: previews and the fire ledger ---------------------------------------------------

MAX_PREVIEW = 100


class ScheduleSpec(ScheduleIn):
    """A schedule to preview without saving it: `interval`, or `cron` with `timezone` and `dst`."""

    model_config = ConfigDict(json_schema_extra={"allOf": ONE_SCHEDULE})

    def schedule(self) -> Schedule:
        if (self.interval is None) == (self.cron is None):
            raise InvalidFieldsError([FieldError("interval", "give exactly one of interval, cron")])
        if self.cron is None:
            for name in ("timezone", "dst"):
                if getattr(self, name) is not None:
                    raise InvalidFieldsError([FieldError(name, "applies to a cron schedule only")])
            assert self.interval is not None
            return IntervalSchedule(minutes=self.interval)
        dst = self.dst or DstIn()
        return CronSchedule(
            expression=self.cron,
            timezone=self.timezone or "UTC",
            dst=DstPolicy(gap=DstGap(dst.gap), overlap=DstOverlap(dst.overlap)),
        )


class PreviewQuery(_Query):
    count: Annotated[int, Field(ge=1, le=MAX_PREVIEW, description="How many runs.")] = 10
    start: Annotated[
        datetime | None,
        Field(
            alias="from",
            description="RFC 3339, with an offset; the runs listed are at or after it "
            "(default: now).",
        ),
    ] = None

    @field_validator("start", mode="before")
    @classmethod
    def _rfc3339(cls, value: object) -> object:
        # Not what else pydantic reads as a time (a Unix timestamp, a date alone, a space for T):
        # the document says RFC 3339, as JSON Schema's `date-time` means it (the offset: below).
        if isinstance(value, str) and not _RFC3339.fullmatch(value):
            raise ValueError("must be an RFC 3339 time (e.g. 2027-03-28T00:00:00Z)")
        return value

    @field_validator("start")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("must have a time zone offset (e.g. 2027-03-28T00:00:00Z)")
        return value


_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?(?:[Zz]|[+-][0-9]{2}:[0-9]{2})?"
)


class FireOut(BaseModel):
    at: datetime = Field(description="The instant, UTC.")
    local: datetime = Field(description="The same instant as a wall time in the schedule's zone.")
    note: FireNote | None = Field(
        description="`dst_shifted`: its local time did not exist, it runs just after the gap; "
        "`dst_repeated`: the second occurrence of a local time that happened twice."
    )


class SchedulePreviewOut(BaseModel):
    next: list[FireOut]


FIRE_OUTCOMES = Literal["FIRED", "OVERLAP", "MISSED", "PAUSED", "QUOTA"]


class FireEntryOut(BaseModel):
    scheduled_at: datetime = Field(description="The slot; for several slots, the last.")
    first_scheduled_at: datetime = Field(description="The first slot (the same for one slot).")
    outcome: FIRE_OUTCOMES
    job_id: UUID | None = Field(description="The job a FIRED slot created.")
    slots: int
    detail: str | None


class FirePageOut(BaseModel):
    fires: list[FireEntryOut]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null at the end."
    )


class FireQuery(_Query):
    limit: PageLimit = DEFAULT_PAGE_SIZE
    cursor: PageCursor = None


# --- analytics -------------------------------------------------------------------------------

DEFAULT_ANALYTICS_DAYS = 7
MAX_ANALYTICS_DAYS = 90


class AnalyticsQuery(_Query):
    since: Annotated[
        datetime | None,
        Field(
            description=f"RFC 3339, with an offset: the window holds the jobs created at or after "
            f"it, up to now (default: {DEFAULT_ANALYTICS_DAYS} days ago; at most "
            f"{MAX_ANALYTICS_DAYS} days ago, not in the future)."
        ),
    ] = None

    @field_validator("since", mode="before")
    @classmethod
    def _rfc3339(cls, value: object) -> object:
        if isinstance(value, str) and not _RFC3339.fullmatch(value):
            raise ValueError("must be an RFC 3339 time (e.g. 2027-03-28T00:00:00Z)")
        return value

    @field_validator("since")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("must have a time zone offset (e.g. 2027-03-28T00:00:00Z)")
        return value


class JobStatusCountsOut(BaseModel):
    """Jobs of the window by status; every status is present, zero or not."""

    PENDING: int
    QUEUED: int
    RUNNING: int
    COMPLETED: int
    FAILED: int
    CANCELED: int


class JobAnalyticsOut(BaseModel):
    since: datetime = Field(description="The window's start.")
    until: datetime = Field(description="The window's end: when the figures were computed.")
    jobs: int = Field(description="Jobs created in the window.")
    jobs_by_status: JobStatusCountsOut
    success_rate: float | None = Field(
        description="COMPLETED jobs over finished ones (COMPLETED, FAILED, CANCELED), 0 to 1; "
        "null when none finished."
    )
    duration_p50_s: float | None = Field(
        description="Median seconds from start to finish of the finished jobs that started; "
        "null when there are none."
    )
    duration_p95_s: float | None = Field(description="95th percentile of the same durations.")
    execution_time_s: float = Field(description="The sum of the same durations, in seconds.")
    log_lines: int = Field(
        description="Stored log lines of the window's jobs, every attempt; counted when each "
        "attempt's log ends, so lines a retain_logs=false workflow later discards still count."
    )


class WorkflowStateCountsOut(BaseModel):
    active: int
    paused: int
    terminated: int


class BuildStatusCountsOut(BaseModel):
    QUEUED: int
    STARTED: int
    COMPLETED: int
    FAILED: int


class WorkflowCountsOut(BaseModel):
    """The user's workflows now (not over the window)."""

    total: int
    by_state: WorkflowStateCountsOut
    by_build_status: BuildStatusCountsOut


class UserAnalyticsOut(JobAnalyticsOut):
    workflows: WorkflowCountsOut


class WorkflowAnalyticsOut(JobAnalyticsOut):
    workflow_id: UUID


# --- notifications and the caller's profile -----------------------------------------------------

MAX_MARK_READ_IDS = 200
NotificationPreferenceIn = Literal["ALERTS", "ALL", "NONE"]
NOTIFICATION_PREFERENCE_DOC = (
    "Which notifications you are shown: `ALERTS` (the default: kinds ALERT, ERROR and WARN, and "
    "workflow.recovered), `ALL`, or `NONE`. Every notification is stored; this applies when "
    "listing."
)


class NotificationOut(BaseModel):
    id: UUID
    kind: NotificationKind
    title: str
    message: str
    entity_type: NotificationEntityType
    entity_id: UUID = Field(description="The workflow's or job's id.")
    action_url: str | None = Field(description="The page that shows what happened.")
    read_at: datetime | None
    created_at: datetime


class NotificationPageOut(BaseModel):
    notifications: list[NotificationOut]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null at the end."
    )


class NotificationQuery(_Query):
    unread: bool = Field(False, description="Only the notifications not marked read.")
    limit: PageLimit = DEFAULT_PAGE_SIZE
    cursor: PageCursor = None


class MarkReadIn(BaseModel):
    """Exactly one of ``ids`` and ``all``."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={"oneOf": [_given("ids"), _given("all")]},
    )

    ids: list[UUID] | None = Field(
        None,
        min_length=1,
        max_length=MAX_MARK_READ_IDS,
        description=f"1 to {MAX_MARK_READ_IDS} of your notifications' ids; other ids are ignored.",
    )
    all: Literal[True] | None = Field(
        None, description="`true`: every unread notification you are shown."
    )


class MarkReadOut(BaseModel):
    marked: int = Field(description="How many unread notifications this marked read.")


class ProfileOut(BaseModel):
    id: UUID
    email: str
    created_at: datetime
    notification_preference: NotificationPreferenceIn = Field(
        description=NOTIFICATION_PREFERENCE_DOC
    )


class ProfileUpdate(_Strict):
    notification_preference: NotificationPreferenceIn = Field(
        description=NOTIFICATION_PREFERENCE_DOC
    )
