"""/workflows/{id}/jobs: manual runs and a workflow's jobs."""

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from chronoverse.domain import JobStatus, JobTrigger
from chronoverse.postgres import Conn
from services.server.http_errors import ERRORS
from services.server.routes.deps import Auth, Context, IdempotencyKey, run_idempotent
from services.server.schemas import MAX_PAGE_SIZE, JobOut, JobPageOut
from services.server.store import idempotency, jobs

router = APIRouter(prefix="/workflows/{workflow_id}/jobs", tags=["jobs"], responses=ERRORS)


@router.post(
    "",
    status_code=201,
    response_model=JobOut,
    summary="Run the workflow now (a MANUAL job). 409 when it is terminated or its "
    "build has not COMPLETED.",
)
def run_workflow(
    workflow_id: UUID, who: Auth, context: Context, key: IdempotencyKey = None
) -> JSONResponse:
    def operation(conn: Conn) -> tuple[int, Any]:
        job = jobs.run_now(conn, who.user_id, workflow_id, idempotency_key=key)
        return 201, JobOut.of(job).model_dump(mode="json")

    fingerprint = idempotency.fingerprint("POST", f"/workflows/{workflow_id}/jobs", "")
    return run_idempotent(context, who, key, fingerprint, operation)


@router.get("", response_model=JobPageOut, summary="A workflow's jobs, newest first.")
def list_jobs(
    workflow_id: UUID,
    who: Auth,
    context: Context,
    status: JobStatus | None = None,
    trigger: JobTrigger | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 50,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> JobPageOut:
    query = jobs.JobFilter(status=status, trigger=trigger, limit=limit, cursor=cursor)
    with context.transaction() as conn:
        page = jobs.list_page(conn, who.user_id, workflow_id, query)
    return JobPageOut(jobs=[JobOut.of(j) for j in page.jobs], next_cursor=page.next_cursor)


@router.get("/{job_id}", response_model=JobOut, summary="One job.")
def get_job(workflow_id: UUID, job_id: UUID, who: Auth, context: Context) -> JobOut:
    with context.transaction() as conn:
        return JobOut.of(jobs.get(conn, who.user_id, workflow_id, job_id))
