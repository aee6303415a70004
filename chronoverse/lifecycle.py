"""Workflow state changes that several services make: events to the outbox, and termination.

Each function runs on the caller's connection, inside the caller's transaction, so the change,
its outbox event and any cancelled jobs commit together.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from psycopg.types.json import Jsonb

from chronoverse.domain import Topic, Workflow
from chronoverse.postgres import QUERIES, Conn

MESSAGE_VERSION = 1
SCHEDULER_CHANNEL = "chronoverse_scheduler"


def event_body(event: str, workflow: Workflow) -> dict[str, Any]:
    """The `workflows` topic message for an event (versioned, snake_case)."""
    return {
        "v": MESSAGE_VERSION,
        "type": event,
        "workflow_id": str(workflow.id),
        "user_id": str(workflow.user_id),
        "kind": workflow.kind.value,
        "generation": workflow.generation,
    }


def emit(conn: Conn, event: str, workflow: Workflow) -> None:
    conn.execute(
        QUERIES.insert_outbox,
        {
            "topic": Topic.WORKFLOWS.value,
            "key": str(workflow.id),
            "payload": Jsonb(event_body(event, workflow)),
        },
    )


def terminate(
    conn: Conn, workflow_id: UUID, *, reason: str, user_id: UUID | None = None
) -> Workflow | None:
    """Terminate a live workflow, cancel its pending jobs, emit the event.

    Returns None when the workflow is absent (or not the user's) or already terminated.
    """
    row = conn.execute(
        QUERIES.terminate_workflow, {"id": workflow_id, "user_id": user_id, "reason": reason}
    ).fetchone()
    if row is None:
        return None
    workflow = Workflow.from_row(row)
    conn.execute(QUERIES.cancel_pending_jobs, {"workflow_id": workflow_id, "reason": reason})
    emit(conn, "workflow.terminated", workflow)
    return workflow


def wake_scheduler(conn: Conn) -> None:
    """Wake the scheduling workers when this transaction commits (LISTEN/NOTIFY)."""
    conn.execute(QUERIES.notify_scheduler)
