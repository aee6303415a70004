"""Workflow operations: create, read, list, update, terminate, delete.

Every operation runs on a connection inside the caller's transaction, so an Idempotency-Key and
the outbox event commit together with the change. Decisions (what an update changes, what a page
cursor means) are pure functions below the class.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

from psycopg.types.json import Jsonb

from chronoverse import lifecycle
from chronoverse.domain import BuildStatus, Workflow, WorkflowKind
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
from chronoverse.secrets import SecretBox, open_payload, seal_payload
from chronoverse.sql import Queries
from services.server.schemas import DEFAULT_PAGE_SIZE, WorkflowCreate, WorkflowUpdate
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
    limit: int = DEFAULT_PAGE_SIZE
    cursor: str | None = None


@dataclass(frozen=True, kw_only=True)
class Page:
    workflows: list[Workflow]
    next_cursor: str | None


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
    interval_minutes: int | None
    max_failures: int
    generation: int
    build_status: BuildStatus


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
            "interval_minutes": request.interval,
            "max_failures": request.max_consecutive_job_failures_allowed,
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
            "interval_minutes": plan.interval_minutes,
            "max_failures": plan.max_failures,
            "generation": plan.generation,
            "build_status": plan.build_status.value,
        },
    ).fetchone()
    assert updated is not None  # the row is locked and not terminated
    workflow = Workflow.from_row(updated)
    lifecycle.emit(conn, WorkflowEventType.UPDATED, workflow)
    return workflow


def terminate(
    conn: Conn, user_id: UUID, workflow_id: UUID, *, reason: str = TERMINATED_BY_USER
) -> Workflow:
    """Terminate and cancel pending jobs. Terminating a terminated workflow changes nothing."""
    workflow = lifecycle.terminate(conn, workflow_id, reason=reason, user_id=user_id)
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
                    "give at least one of name, payload, interval, "
                    "max_consecutive_job_failures_allowed",
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
        interval_minutes=request.interval
        if request.interval is not None
        else current.interval_minutes,
        max_failures=(
            request.max_consecutive_job_failures_allowed
            if request.max_consecutive_job_failures_allowed is not None
            else current.max_consecutive_job_failures_allowed
        ),
        generation=generation,
        build_status=build_status,
    )


def like_pattern(text: str) -> str:
    """An ILIKE pattern matching ``text`` anywhere, with its own wildcards taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"
