"""/workflows/{id}/jobs: manual runs, a workflow's jobs, and each job's history."""

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from chronoverse.job_events import MAX_JOB_EVENTS
from services.server.http_errors import ERRORS, RUN_LIMITED
from services.server.routes.deps import Api, Auth, IdempotencyKey, replay_response
from services.server.schemas import JOB_CREATED, JobEventsOut, JobOut, JobPageOut, JobQuery

router = APIRouter(prefix="/workflows/{workflow_id}/jobs", tags=["jobs"], responses=ERRORS)


@router.post(
    "",
    status_code=201,
    response_model=JobOut,
    responses={**JOB_CREATED, **RUN_LIMITED},
    summary="Run the workflow now (a MANUAL job). 409 when it is terminated, its "
    "build has not COMPLETED, or the user is at CHRONOVERSE_MAX_ACTIVE_JOBS_PER_USER; 429 past "
    "CHRONOVERSE_MANUAL_RUNS_PER_MINUTE.",
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


@router.get(
    "/{job_id}/events",
    response_model=JobEventsOut,
    summary=f"A job's history, oldest first: its newest {MAX_JOB_EVENTS} events at most.",
)
def job_events(workflow_id: UUID, job_id: UUID, who: Auth, api: Api) -> JobEventsOut:
    return api.jobs.events(who, workflow_id, job_id)
