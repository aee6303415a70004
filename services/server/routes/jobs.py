"""/workflows/{id}/jobs: manual runs and a workflow's jobs."""

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from services.server.http_errors import ERRORS
from services.server.routes.deps import Api, Auth, IdempotencyKey, replay_response
from services.server.schemas import JOB_CREATED, JobOut, JobPageOut, JobQuery

router = APIRouter(prefix="/workflows/{workflow_id}/jobs", tags=["jobs"], responses=ERRORS)


@router.post(
    "",
    status_code=201,
    response_model=JobOut,
    responses=JOB_CREATED,
    summary="Run the workflow now (a MANUAL job). 409 when it is terminated or its "
    "build has not COMPLETED.",
)
def run_workflow(
    workflow_id: UUID, who: Auth, api: Api, key: IdempotencyKey = None
) -> JSONResponse:
    return replay_response(api.jobs.run(who, workflow_id, idempotency_key=key))


@router.get("", response_model=JobPageOut, summary="A workflow's jobs, newest first.")
def list_jobs(
    workflow_id: UUID, who: Auth, api: Api, query: Annotated[JobQuery, Query()]
) -> JobPageOut:
    return api.jobs.list(who, workflow_id, query)


@router.get("/{job_id}", response_model=JobOut, summary="One job.")
def get_job(workflow_id: UUID, job_id: UUID, who: Auth, api: Api) -> JobOut:
    return api.jobs.get(who, workflow_id, job_id)
