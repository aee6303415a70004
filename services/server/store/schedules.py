"""Schedule operations of a workflow: pause, resume (with its catch-up), and the fire ledger."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from chronoverse import lifecycle
from chronoverse.domain import BuildStatus, Workflow
from chronoverse.errors import ConflictError, NotFoundError
from chronoverse.postgres import Conn
from chronoverse.scheduling import DueWorkflow, SkipReason, plan_fire
from services.server.store.pagination import decode_cursor, encode_cursor
from services.server.store.workflows import QUERIES, get


@dataclass(frozen=True, kw_only=True)
class FireEntry:
    """One entry of the fire ledger: a slot that fired, or slots that did not, and why."""

    scheduled_at: datetime  # the slot (for a range: its last slot)
    first_scheduled_at: datetime  # the range's first slot (the same for a single slot)
    outcome: str  # FIRED, OVERLAP, MISSED, PAUSED, QUOTA
    job_id: UUID | None
    slots: int
    detail: str


@dataclass(frozen=True, kw_only=True)
class FirePage:
    fires: list[FireEntry]
    next_cursor: str | None


def _terminated(workflow: Workflow, action: str) -> ConflictError:
    return ConflictError(
        "workflow_terminated",
        f"workflow {workflow.id} was terminated ({workflow.terminated_reason}); "
        f"a terminated workflow cannot be {action}",
    )


def pause(conn: Conn, user_id: UUID, workflow_id: UUID) -> Workflow:
    """Stop automatic jobs (manual runs stay allowed). Pausing a paused workflow changes nothing."""
    row = conn.execute(QUERIES.pause_workflow, {"id": workflow_id, "user_id": user_id}).fetchone()
    if row is not None:
        return Workflow.from_row(row)
    current = get(conn, user_id, workflow_id)  # 404 for a missing or foreign workflow
    if current.is_terminated:
        raise _terminated(current, "paused")
    return current


def resume(conn: Conn, user_id: UUID, workflow_id: UUID, *, now: datetime) -> Workflow:
    """Resume automatic jobs. The slots that fell while it was paused follow its catch-up
    policy now, in this transaction: the ones it runs become jobs, the others PAUSED entries."""
    row = conn.execute(QUERIES.lock_workflow, {"id": workflow_id, "user_id": user_id}).fetchone()
    if row is None:
        raise NotFoundError("workflow", str(workflow_id))
    workflow = Workflow.from_row(row)
    if workflow.is_terminated:
        raise _terminated(workflow, "resumed")
    if workflow.paused_at is None:
        return workflow
    due = workflow.next_run_at
    if due is not None and due <= now and workflow.build_status is BuildStatus.COMPLETED:
        active = conn.execute(QUERIES.has_active_job, {"workflow_id": workflow_id}).fetchone()
        decision = plan_fire(
            DueWorkflow(
                id=workflow.id,
                user_id=workflow.user_id,
                next_run_at=due,
                schedule=workflow.schedule,
                catchup=workflow.catchup,
                has_active_job=bool(active and active["active"]),
            ),
            now,
            not_run=SkipReason.PAUSED,
        )
        lifecycle.record_fires(conn, [decision])
        lifecycle.wake_scheduler(conn)
    resumed = conn.execute(
        QUERIES.unpause_workflow, {"id": workflow_id, "user_id": user_id}
    ).fetchone()
    assert resumed is not None  # locked above
    return Workflow.from_row(resumed)


def list_fires(
    conn: Conn, user_id: UUID, workflow_id: UUID, *, limit: int, cursor: str | None
) -> FirePage:
    """The workflow's fire ledger, newest first, a page at a time."""
    get(conn, user_id, workflow_id)  # 404 for a missing or foreign workflow
    after = decode_cursor(cursor) if cursor else None
    rows = conn.execute(
        QUERIES.list_fires,
        {
            "workflow_id": workflow_id,
            "after_at": after[0] if after else None,
            "after_key": after[1].hex if after else None,
            "limit": limit + 1,
        },
    ).fetchall()
    fires = [
        FireEntry(
            scheduled_at=r["scheduled_at"],
            first_scheduled_at=r["first_scheduled_at"],
            outcome=r["outcome"],
            job_id=r["job_id"],
            slots=r["slots"],
            detail=r["detail"],
        )
        for r in rows[:limit]
    ]
    more = len(rows) > limit
    last = rows[limit - 1] if more else None
    return FirePage(
        fires=fires,
        next_cursor=encode_cursor(last["scheduled_at"], UUID(hex=last["sort_key"]))
        if last
        else None,
    )
