"""Workflow operations: create, read, list, update, terminate, delete.

Every operation runs on a connection inside the caller's transaction, so an Idempotency-Key and
the outbox event commit together with the change. Decisions (what an update changes, what a page
cursor means) are pure functions below the class.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from psycopg.types.json import Jsonb

from chronoverse import lifecycle
from chronoverse.domain import BuildStatus, Workflow, WorkflowKind, WorkflowState, utcnow
from chronoverse.egress import EgressPolicy, literal_refusal, policy_from_settings
from chronoverse.errors import ConflictError, FieldError, InvalidFieldsError, NotFoundError
from chronoverse.events import WorkflowEventType
from chronoverse.payloads import (
    DEFAULT_POLICY,
    ContainerPayload,
    ContainerPolicy,
    HeartbeatPayload,
    Payload,
    parse_payload,
)
from chronoverse.postgres import Conn
from chronoverse.schedules import (
    Catchup,
    CatchupPolicy,
    CronSchedule,
    DstGap,
    DstOverlap,
    DstPolicy,
    fires_from,
)
from chronoverse.secrets import SecretBox, open_payload, seal_payload
from chronoverse.sql import Queries
from services.server.schemas import (
    DEFAULT_PAGE_SIZE,
    CatchupIn,
    ScheduleIn,
    WorkflowCreate,
    WorkflowUpdate,
)
from services.server.settings import Settings
from services.server.store import volumes
from services.server.store.pagination import decode_cursor, encode_cursor

QUERIES = Queries.load(Path(__file__).with_name("queries.sql"))
TERMINATED_BY_USER = "terminated by the user"


@dataclass(frozen=True, kw_only=True)
class ListFilter:
    kind: WorkflowKind | None = None
    build_status: BuildStatus | None = None
    terminated: bool | None = None
    name_contains: str | None = None
    state: WorkflowState | None = None
    failing: bool | None = None  # live, and failures are counting (or the last job failed)
    limit: int = DEFAULT_PAGE_SIZE
    cursor: str | None = None


@dataclass(frozen=True, kw_only=True)
class Page:
    workflows: list[Workflow]
    next_cursor: str | None


@dataclass(frozen=True, kw_only=True)
class Counters:
    """A user's workflows by state, and the live ones that are failing (ListFilter.failing)."""

    active: int
    paused: int
    terminated: int
    failing: int


DEFAULT_EGRESS = EgressPolicy()


@dataclass(frozen=True, kw_only=True)
class PayloadRules:
    """What the operator allows in a payload beyond its own validation (the settings)."""

    containers: ContainerPolicy = DEFAULT_POLICY
    egress: EgressPolicy = DEFAULT_EGRESS
    max_volumes_per_user: int = 10

    @classmethod
    def from_settings(cls, settings: Settings) -> PayloadRules:
        return cls(
            containers=ContainerPolicy.from_settings(settings),
            egress=policy_from_settings(settings),
            max_volumes_per_user=settings.max_volumes_per_user,
        )

    def parse(self, kind: WorkflowKind, raw: object) -> Payload:
        """The payload, validated, within the container policy, and with no HEARTBEAT endpoint
        that is an address the egress policy always refuses (a host name is checked when the
        job runs, after DNS)."""
        payload = parse_payload(kind, raw, self.containers)
        if isinstance(payload, HeartbeatPayload) and payload.endpoint is not None:
            if (reason := literal_refusal(self.egress, payload.endpoint)) is not None:
                raise InvalidFieldsError(
                    [FieldError("payload.endpoint", f"is blocked by the egress policy: {reason}")]
                )
        return payload


DEFAULT_RULES = PayloadRules()


@dataclass(frozen=True, kw_only=True)
class UpdatePlan:
    name: str
    payload: dict[str, Any]
    schedule: SchedulePlan
    max_failures: int
    retain_logs: bool
    generation: int
    build_status: BuildStatus


@dataclass(frozen=True, kw_only=True)
class SchedulePlan:
    """The schedule columns a create or an update writes."""

    interval_minutes: int | None
    cron: str | None
    timezone: str
    dst: DstPolicy
    catchup: CatchupPolicy
    # A new first slot (a new cron schedule starts at its next slot); None: keep the current one,
    # or for a new interval workflow, now (its first job runs at once).
    next_run_at: datetime | None

    def params(self) -> dict[str, Any]:
        return {
            "interval_minutes": self.interval_minutes,
            "cron": self.cron,
            "timezone": self.timezone,
            "dst_gap": self.dst.gap.value,
            "dst_overlap": self.dst.overlap.value,
            "catchup": self.catchup.mode.value,
            "catchup_window_minutes": self.catchup.window_minutes,
            "next_run_at": self.next_run_at,
        }


def create(
    conn: Conn,
    user_id: UUID,
    request: WorkflowCreate,
    *,
    secrets: SecretBox,
    rules: PayloadRules = DEFAULT_RULES,
) -> Workflow:
    kind = WorkflowKind(request.kind)
    parsed = rules.parse(kind, request.payload)
    if isinstance(parsed, ContainerPayload):
        volumes.check_quota(
            conn, user_id, {v.name for v in parsed.volumes}, limit=rules.max_volumes_per_user
        )
    payload = seal_payload(secrets, kind, parsed.to_json(), None)
    row = conn.execute(
        QUERIES.insert_workflow,
        {
            "user_id": user_id,
            "name": request.name,
            "kind": kind.value,
            "payload": Jsonb(payload),
            "max_failures": request.max_consecutive_job_failures_allowed,
            "retain_logs": request.retain_logs,
            **plan_schedule(request, None, now=utcnow()).params(),
        },
    ).fetchone()
    assert row is not None
    workflow = Workflow.from_row(row)
    lifecycle.emit(conn, WorkflowEventType.CREATED, workflow)
    return workflow


def get(conn: Conn, user_id: UUID, workflow_id: UUID) -> Workflow:
    row = conn.execute(QUERIES.get_workflow, {"id": workflow_id, "user_id": user_id}).fetchone()
    if row is None:
        raise NotFoundError("workflow", str(workflow_id))
    return Workflow.from_row(row)


def list_page(conn: Conn, user_id: UUID, query: ListFilter) -> Page:
    after = decode_cursor(query.cursor) if query.cursor else None
    rows = conn.execute(
        QUERIES.list_workflows,
        {
            "user_id": user_id,
            "after_created_at": after[0] if after else None,
            "after_id": after[1] if after else None,
            "kind": query.kind.value if query.kind else None,
            "build_status": query.build_status.value if query.build_status else None,
            "terminated": query.terminated,
            "name_pattern": like_pattern(query.name_contains) if query.name_contains else None,
            "state": query.state.value if query.state else None,
            "failing": query.failing,
            "limit": query.limit + 1,
        },
    ).fetchall()
    workflows = [Workflow.from_row(r) for r in rows[: query.limit]]
    more = len(rows) > query.limit
    last = workflows[-1] if workflows else None
    return Page(
        workflows=workflows,
        next_cursor=encode_cursor(last.created_at, last.id) if more and last else None,
    )


def counters(conn: Conn, user_id: UUID) -> Counters:
    row = conn.execute(QUERIES.workflow_counters, {"user_id": user_id}).fetchone()
    assert row is not None
    return Counters(
        active=row["active"],
        paused=row["paused"],
        terminated=row["terminated"],
        failing=row["failing"],
    )


def update(
    conn: Conn,
    user_id: UUID,
    workflow_id: UUID,
    request: WorkflowUpdate,
    *,
    secrets: SecretBox,
    rules: PayloadRules = DEFAULT_RULES,
) -> Workflow:
    row = conn.execute(QUERIES.lock_workflow, {"id": workflow_id, "user_id": user_id}).fetchone()
    if row is None:
        raise NotFoundError("workflow", str(workflow_id))
    current = Workflow.from_row(row)
    plan = plan_update(current, request, secrets=secrets, rules=rules)
    if plan.generation != current.generation and current.kind is WorkflowKind.CONTAINER:
        volumes.check_quota(
            conn,
            user_id,
            {v["name"] for v in plan.payload.get("volumes", [])},
            limit=rules.max_volumes_per_user,
            workflow_id=workflow_id,
        )
    updated = conn.execute(
        QUERIES.update_workflow,
        {
            "id": workflow_id,
            "user_id": user_id,
            "name": plan.name,
            "payload": Jsonb(plan.payload),
            **plan.schedule.params(),
            "max_failures": plan.max_failures,
            "retain_logs": plan.retain_logs,
            "generation": plan.generation,
            "build_status": plan.build_status.value,
        },
    ).fetchone()
    assert updated is not None  # the row is locked and not terminated
    workflow = Workflow.from_row(updated)
    lifecycle.emit(conn, WorkflowEventType.UPDATED, workflow)
    return workflow


def terminate(
    conn: Conn,
    user_id: UUID,
    workflow_id: UUID,
    *,
    reason: str = TERMINATED_BY_USER,
    public_url: str | None = None,
) -> Workflow:
    """Terminate and cancel pending jobs. Terminating a terminated workflow changes nothing.
    With ``public_url``, the owner is notified (chronoverse.lifecycle.terminate)."""
    workflow = lifecycle.terminate(
        conn, workflow_id, reason=reason, user_id=user_id, public_url=public_url
    )
    # None: absent (404) or already terminated (returned unchanged).
    return workflow if workflow is not None else get(conn, user_id, workflow_id)


def delete(conn: Conn, user_id: UUID, workflow_id: UUID) -> None:
    """Terminate (so workers stop its work), then delete the workflow and its history."""
    workflow = terminate(conn, user_id, workflow_id, reason="deleted by the user")
    conn.execute(QUERIES.delete_workflow, {"id": workflow_id, "user_id": user_id})
    lifecycle.emit(conn, WorkflowEventType.DELETED, workflow)


# --- pure decisions -----------------------------------------------------------------------------


def plan_update(
    current: Workflow,
    request: WorkflowUpdate,
    *,
    secrets: SecretBox,
    rules: PayloadRules = DEFAULT_RULES,
) -> UpdatePlan:
    """What an update writes. A changed CONTAINER payload means a rebuild of a new generation.

    Secret values are compared in plain: sealing the same value twice gives other ciphertexts,
    and a value sent back as the mask keeps the stored one. An unchanged payload keeps its
    stored ciphertexts and its generation.
    """
    if current.is_terminated:
        raise ConflictError(
            "workflow_terminated",
            f"workflow {current.id} was terminated ({current.terminated_reason}); "
            "terminated workflows cannot change",
        )
    if not request.model_fields_set - {"payload"} and request.payload is None:
        raise InvalidFieldsError(
            [
                FieldError(
                    "body",
                    "give at least one of name, payload, interval, cron, timezone, dst, "
                    "catchup, catchup_window_minutes, max_consecutive_job_failures_allowed, "
                    "retain_logs",
                )
            ]
        )
    payload = current.payload
    generation = current.generation
    build_status = current.build_status
    if request.payload is not None:
        parsed = rules.parse(current.kind, request.payload)
        requested = seal_payload(secrets, current.kind, parsed.to_json(), current.payload)
        if open_payload(secrets, current.kind, requested) != open_payload(
            secrets, current.kind, current.payload
        ):
            payload = requested
            generation += 1
            if isinstance(parsed, ContainerPayload):
                build_status = BuildStatus.QUEUED
    return UpdatePlan(
        name=request.name if request.name is not None else current.name,
        payload=payload,
        schedule=plan_schedule(request, current, now=utcnow()),
        max_failures=(
            request.max_consecutive_job_failures_allowed
            if request.max_consecutive_job_failures_allowed is not None
            else current.max_consecutive_job_failures_allowed
        ),
        retain_logs=(
            request.retain_logs if request.retain_logs is not None else current.retain_logs
        ),
        generation=generation,
        build_status=build_status,
    )


def plan_schedule(
    request: ScheduleIn | WorkflowUpdate, current: Workflow | None, *, now: datetime
) -> SchedulePlan:
    """The schedule a create (``current`` None) or an update asks for; InvalidFieldsError naming
    the field when the combination is not one. ``interval`` or ``cron`` replaces the schedule;
    ``timezone`` and ``dst`` belong to a cron schedule; ``catchup_window_minutes`` to ``all``."""
    if request.interval is not None and request.cron is not None:
        raise InvalidFieldsError([FieldError("cron", "give either interval or cron, not both")])
    catchup_in = request if isinstance(request, CatchupIn) else None
    if current is None and request.interval is None and request.cron is None:
        raise InvalidFieldsError(
            [FieldError("interval", "give a schedule: interval (minutes) or cron")]
        )
    cron = request.cron if request.interval is None else None
    if cron is None and request.interval is None and current is not None:
        cron = current.cron  # the schedule stays; its zone or DST policy may change
    if cron is None:
        for name in ("timezone", "dst"):
            if getattr(request, name) is not None:
                raise InvalidFieldsError([FieldError(name, "applies to a cron schedule only")])
        interval = request.interval
        if interval is None and current is not None:
            interval = current.interval_minutes
        zone, dst = "UTC", DstPolicy()
    else:
        interval = None
        keep = current is not None and current.cron is not None
        zone = request.timezone or (current.timezone if keep and current else "UTC")
        dst = (
            DstPolicy(gap=DstGap(request.dst.gap), overlap=DstOverlap(request.dst.overlap))
            if request.dst is not None
            else (current.dst if keep and current else DstPolicy())
        )
    requested = catchup_in.catchup if catchup_in else None
    mode = (
        Catchup(requested)
        if requested is not None
        else (current.catchup.mode if current else Catchup.LATEST)
    )
    window = catchup_in.catchup_window_minutes if catchup_in else None
    if window is not None and mode is not Catchup.ALL:
        raise InvalidFieldsError(
            [FieldError("catchup_window_minutes", "applies to catchup all only")]
        )
    if window is None and mode is Catchup.ALL and current is not None:
        window = current.catchup.window_minutes
    catchup = CatchupPolicy(mode=mode, window_minutes=window if mode is Catchup.ALL else None)
    next_run_at = None
    if cron is not None:
        schedule = CronSchedule(expression=cron, timezone=zone, dst=dst)
        unchanged = current is not None and current.schedule == schedule
        if not unchanged:
            next_run_at = next(fires_from(schedule, start=now)).at
    return SchedulePlan(
        interval_minutes=interval,
        cron=cron,
        timezone=zone,
        dst=dst,
        catchup=catchup,
        next_run_at=next_run_at,
    )


def like_pattern(text: str) -> str:
    """An ILIKE pattern matching ``text`` anywhere, with its own wildcards taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"
