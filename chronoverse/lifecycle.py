"""Workflow state changes that several services make: outbox events, termination, wake-ups.

Each function runs on the caller's connection, inside the caller's transaction, so the change,
its outbox event and any cancelled jobs commit together. A wake-up is a NOTIFY on the scheduling
workers' channel, delivered when that transaction commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

import psycopg
from psycopg.types.json import Jsonb

from chronoverse import alerts
from chronoverse.domain import Topic, Workflow, utcnow
from chronoverse.events import WorkflowEvent, WorkflowEventType
from chronoverse.postgres import QUERIES, Conn
from chronoverse.schedules import due_slots
from chronoverse.scheduling import FireDecision, PlannedRun, Skip, SkipReason


def emit(conn: Conn, event_type: WorkflowEventType, workflow: Workflow) -> None:
    """Write the workflow's event to the outbox, to reach the `workflows` topic on commit."""
    event = WorkflowEvent.of(event_type, workflow)
    conn.execute(
        QUERIES.insert_outbox,
        {
            "topic": Topic.WORKFLOWS.value,
            "key": str(workflow.id),
            "payload": Jsonb(event.to_json()),
        },
    )


def terminate(
    conn: Conn,
    workflow_id: UUID,
    *,
    reason: str,
    user_id: UUID | None = None,
    public_url: str | None = None,
) -> Workflow | None:
    """Terminate a live workflow, cancel its pending jobs, emit the event.

    ``user_id``: its owner terminates it (else it terminates itself, after too many failed jobs).
    With ``public_url``, its owner is told (a notification, the ``workflow.terminated`` webhook
    event); a deletion, which leaves nothing to look at, passes none.
    Returns None when the workflow is absent (or not the user's) or already terminated.
    """
    row = conn.execute(
        QUERIES.terminate_workflow, {"id": workflow_id, "user_id": user_id, "reason": reason}
    ).fetchone()
    if row is None:
        return None
    workflow = Workflow.from_row(row)
    if public_url is not None:
        terminated = alerts.Terminated(
            workflow=alerts.WorkflowState.from_row(row), reason=reason, by_user=user_id is not None
        )
        alerts.write(conn, [alerts.decide(terminated, public_url=public_url, now=utcnow())])
    conn.execute(QUERIES.cancel_pending_jobs, {"workflow_id": workflow_id, "reason": reason})
    pending = row["pending_run_at"]
    if workflow.paused_at is not None and pending is not None and pending <= workflow.updated_at:
        # The slots that fell while it was paused: into the ledger, none of them run.
        slots = due_slots(workflow.schedule, first=pending, now=workflow.updated_at, keep=1)
        record_fires(
            conn,
            [
                FireDecision(
                    workflow_id=workflow.id,
                    user_id=workflow.user_id,
                    run_slots=(),
                    skips=(
                        Skip(
                            reason=SkipReason.PAUSED,
                            first_scheduled_at=pending,
                            last_scheduled_at=slots.latest,
                            slots=slots.count,
                            detail=f"{slots.count} slot(s) fell while the workflow was paused; "
                            "it was then terminated",
                        ),
                    ),
                    next_run_at=None,
                )
            ],
        )
    emit(conn, WorkflowEventType.TERMINATED, workflow)
    return workflow


def wake_scheduler(conn: Conn) -> None:
    """Wake the scheduling workers when this transaction commits (LISTEN/NOTIFY)."""
    conn.execute(QUERIES.notify_scheduler)


def listen_for_wakeups(conn: psycopg.Connection[Any]) -> None:
    """Have this (autocommit) connection receive :func:`wake_scheduler`'s notifications."""
    conn.execute(QUERIES.listen_scheduler)


@dataclass(frozen=True, kw_only=True)
class CreatedJob:
    """A job :func:`record_fires` wrote; ``queued``: inserted QUEUED, its message still to send."""

    id: UUID
    workflow_id: UUID
    scheduled_at: datetime
    queued: bool


def record_fires(
    conn: Conn, decisions: Sequence[FireDecision], runs: Sequence[PlannedRun] | None = None
) -> tuple[list[CreatedJob], list[tuple[UUID, Skip]]]:
    """Write fire decisions in the caller's transaction: the jobs, the skipped slots (the fire
    ledger's other entries) and each workflow's next slot. Returns the jobs created and the skips.

    ``runs`` are the decisions' run slots as :func:`~chronoverse.scheduling.plan_runs` planned
    them (the scheduler's: most inserted QUEUED, to publish after the commit); without it every
    job is inserted PENDING for the dispatcher. A resume writes the slots that fell while the
    workflow was paused that way, so both fill the ledger alike.
    """
    if runs is None:
        runs = [
            PlannedRun(
                workflow_id=d.workflow_id, user_id=d.user_id, scheduled_at=slot, publish_now=False
            )
            for d in decisions
            for slot in d.run_slots
        ]
    created = [
        CreatedJob(
            id=uuid4(), workflow_id=r.workflow_id, scheduled_at=r.scheduled_at, queued=r.publish_now
        )
        for r in runs
    ]
    if created:
        inserted = conn.execute(
            QUERIES.insert_automatic_jobs,
            {
                "ids": [job.id for job in created],
                "workflow_ids": [r.workflow_id for r in runs],
                "user_ids": [r.user_id for r in runs],
                "slots": [r.scheduled_at for r in runs],
                "queued": [r.publish_now for r in runs],
            },
        ).rowcount
        if inserted != len(created):
            # A slot already had its job (one job per nominal slot): keep only what was written.
            ids = {job.id for job in created}
            rows = conn.execute(QUERIES.existing_jobs, {"ids": list(ids)}).fetchall()
            written = {row["id"] for row in rows}
            created = [job for job in created if job.id in written]
    skips = [(d.workflow_id, s) for d in decisions for s in d.skips]
    if skips:
        conn.execute(
            QUERIES.insert_skips,
            {
                "workflow_ids": [w for w, _ in skips],
                "reasons": [s.reason.value for _, s in skips],
                "firsts": [s.first_scheduled_at for _, s in skips],
                "lasts": [s.last_scheduled_at for _, s in skips],
                "slots": [s.slots for _, s in skips],
                "details": [s.detail for _, s in skips],
            },
        )
    if decisions:
        conn.execute(
            QUERIES.advance_workflows,
            {
                "ids": [d.workflow_id for d in decisions],
                "next_run_ats": [d.next_run_at for d in decisions],
            },
        )
    return created, skips
