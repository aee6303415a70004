"""/workflows: create, list, get, update, terminate, delete."""

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, Response
from fastapi.responses import JSONResponse

from services.server.http_errors import ERRORS
from services.server.routes.deps import Api, Auth, IdempotencyKey, replay_response
from services.server.schemas import (
    WORKFLOW_CREATED,
    WORKFLOW_TERMINATED,
    WorkflowCreate,
    WorkflowOut,
    WorkflowPage,
    WorkflowQuery,
    WorkflowUpdate,
)

router = APIRouter(prefix="/workflows", tags=["workflows"], responses=ERRORS)


@router.post(
    "",
    status_code=201,
    response_model=WorkflowOut,
    responses=WORKFLOW_CREATED,
    summary="Create a HEARTBEAT or CONTAINER workflow.",
)
def create_workflow(
    body: WorkflowCreate, who: Auth, api: Api, key: IdempotencyKey = None
) -> JSONResponse:
    return replay_response(api.workflows.create(who, body, idempotency_key=key))


@router.get(
    "", response_model=WorkflowPage, summary="List workflows, newest first, a page at a time."
)
def list_workflows(who: Auth, api: Api, query: Annotated[WorkflowQuery, Query()]) -> WorkflowPage:
    return api.workflows.list(who, query)


@router.get("/{workflow_id}", response_model=WorkflowOut, summary="Get one workflow.")
def get_workflow(workflow_id: UUID, who: Auth, api: Api) -> WorkflowOut:
    return api.workflows.get(who, workflow_id)


@router.put(
    "/{workflow_id}",
    response_model=WorkflowOut,
    summary="Change name, payload, interval or failure limit; omitted fields are kept. "
    "A changed CONTAINER payload queues a rebuild of a new generation.",
)
def update_workflow(workflow_id: UUID, body: WorkflowUpdate, who: Auth, api: Api) -> WorkflowOut:
    return api.workflows.update(who, workflow_id, body)


@router.post(
    "/{workflow_id}/terminate",
    response_model=WorkflowOut,
    responses=WORKFLOW_TERMINATED,
    summary="Terminate: no new jobs, pending ones are cancelled. Final; history is kept.",
)
def terminate_workflow(
    workflow_id: UUID, who: Auth, api: Api, key: IdempotencyKey = None
) -> JSONResponse:
    return replay_response(api.workflows.terminate(who, workflow_id, idempotency_key=key))


@router.delete(
    "/{workflow_id}",
    status_code=204,
    summary="Terminate, then delete the workflow with its jobs and logs.",
)
def delete_workflow(workflow_id: UUID, who: Auth, api: Api) -> Response:
    api.workflows.delete(who, workflow_id)
    return Response(status_code=204)
