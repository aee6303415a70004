"""Job operations of the API: manual runs, and reading a workflow's jobs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

import psycopg

from chronoverse import lifecycle
from chronoverse.domain import BuildStatus, JobStatus, JobTrigger, Workflow
from chronoverse.errors import ConflictError, NotFoundError
from chronoverse.jobs import Job
from chronoverse.postgres import Conn
from chronoverse.sql import Queries
from services.server.schemas import DEFAULT_PAGE_SIZE
from services.server.store import workflows
from services.server.store.pagination import decode_cursor, encode_cursor

QUERIES = Queries.load(Path(__file__).with_name("queries.sql"))


@dataclass(frozen=True, kw_only=True)
class JobFilter:
    status: JobStatus | None = None
    trigger: JobTrigger | None = None
    limit: int = DEFAULT_PAGE_SIZE
    cursor: str | None = None


@dataclass(frozen=True, kw_only=True)
class JobPage:
    jobs: list[Job]
    next_cursor: str | None


def run_now(conn: Conn, user_id: UUID, workflow_id: UUID, *, idempotency_key: str | None) -> Job:
    """Create a MANUAL job to run as soon as a worker takes it (it bypasses the overlap policy)."""
    row = conn.execute(
        workflows.QUERIES.lock_workflow, {"id": workflow_id, "user_id": user_id}
    ).fetchone()
    if row is None:
        raise NotFoundError("workflow", str(workflow_id))
    workflow = Workflow.from_row(row)
    if workflow.is_terminated:
        raise ConflictError(
            "workflow_terminated",
            f"workflow {workflow_id} was terminated ({workflow.terminated_reason}); "
            "it runs no more jobs",
        )
    if workflow.build_status is not BuildStatus.COMPLETED:
        detail = f": {workflow.build_error}" if workflow.build_error else ""
        raise ConflictError(
            "workflow_not_built",
            f"workflow {workflow_id} cannot run yet: its build is "
            f"{workflow.build_status.value}{detail}; jobs run once it is COMPLETED",
        )
    try:
        job = conn.execute(
            QUERIES.insert_manual_job,
            {
                "workflow_id": workflow_id,
                "user_id": user_id,
                "idempotency_key": idempotency_key,
            },
        ).fetchone()
    except psycopg.errors.UniqueViolation as exc:
        raise ConflictError(
            "idempotency_key_reused",
            f"a job of this workflow already used Idempotency-Key {idempotency_key!r}",
        ) from exc
    assert job is not None
    lifecycle.wake_scheduler(conn)
    return Job.from_row(job)


def get(conn: Conn, user_id: UUID, workflow_id: UUID, job_id: UUID) -> Job:
    row = conn.execute(
        QUERIES.get_job, {"job_id": job_id, "workflow_id": workflow_id, "user_id": user_id}
    ).fetchone()
    if row is None:
        raise NotFoundError("job", str(job_id))
    return Job.from_row(row)


def get_by_id(conn: Conn, user_id: UUID, job_id: UUID) -> Job:
    row = conn.execute(QUERIES.get_job_by_id, {"job_id": job_id, "user_id": user_id}).fetchone()
    if row is None:
        raise NotFoundError("job", str(job_id))
    return Job.from_row(row)


def list_page(conn: Conn, user_id: UUID, workflow_id: UUID, query: JobFilter) -> JobPage:
    workflows.get(conn, user_id, workflow_id)  # 404 for a missing or foreign workflow
    after = decode_cursor(query.cursor) if query.cursor else None
    rows = conn.execute(
        QUERIES.list_jobs,
        {
            "workflow_id": workflow_id,
            "user_id": user_id,
            "after_created_at": after[0] if after else None,
            "after_id": after[1] if after else None,
            "status": query.status.value if query.status else None,
            "trigger": query.trigger.value if query.trigger else None,
            "limit": query.limit + 1,
        },
    ).fetchall()
    found = [Job.from_row(r) for r in rows[: query.limit]]
    last = found[-1] if found else None
    more = len(rows) > query.limit
    return JobPage(
        jobs=found, next_cursor=encode_cursor(last.created_at, last.id) if more and last else None
    )
