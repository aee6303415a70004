"""/workflows: create, list, get, update, terminate, delete."""

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query, Response
from fastapi.responses import JSONResponse

from chronoverse.domain import BuildStatus, WorkflowKind
from chronoverse.postgres import Conn
from services.server.http_errors import ERRORS
from services.server.routes.deps import Auth, Context, IdempotencyKey, run_idempotent
from services.server.schemas import (
    MAX_PAGE_SIZE,
    WorkflowCreate,
    WorkflowOut,
    WorkflowPage,
    WorkflowUpdate,
)
from services.server.store import idempotency, workflows

router = APIRouter(prefix="/workflows", tags=["workflows"], responses=ERRORS)


@router.post(
    "",
    status_code=201,
    response_model=WorkflowOut,
    summary="Create a HEARTBEAT or CONTAINER workflow.",
)
def create_workflow(
    body: WorkflowCreate, who: Auth, context: Context, key: IdempotencyKey = None
) -> JSONResponse:
    def operation(conn: Conn) -> tuple[int, Any]:
        created = workflows.create(
            conn, who.user_id, body, secrets=context.secrets, rules=context.rules
        )
        return 201, WorkflowOut.of(created).model_dump(mode="json")

    fingerprint = idempotency.fingerprint("POST", "/workflows", body.model_dump_json())
    return run_idempotent(context, who, key, fingerprint, operation)


@router.get(
    "", response_model=WorkflowPage, summary="List workflows, newest first, a page at a time."
)
def list_workflows(
    who: Auth,
    context: Context,
    kind: WorkflowKind | None = None,
    build_status: BuildStatus | None = None,
    terminated: bool | None = None,
    name: Annotated[
        str | None, Query(max_length=200, description="Substring of the name, case-insensitive.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 50,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> WorkflowPage:
    query = workflows.ListFilter(
        kind=kind,
        build_status=build_status,
        terminated=terminated,
        name_contains=name,
        limit=limit,
        cursor=cursor,
    )
    with context.transaction() as conn:
        page = workflows.list_page(conn, who.user_id, query)
    return WorkflowPage(
        workflows=[WorkflowOut.of(w) for w in page.workflows], next_cursor=page.next_cursor
    )


@router.get("/{workflow_id}", response_model=WorkflowOut, summary="Get one workflow.")
def get_workflow(workflow_id: UUID, who: Auth, context: Context) -> WorkflowOut:
    with context.transaction() as conn:
        return WorkflowOut.of(workflows.get(conn, who.user_id, workflow_id))


@router.put(
    "/{workflow_id}",
    response_model=WorkflowOut,
    summary="Change name, payload, interval or failure limit; omitted fields are kept. "
    "A changed CONTAINER payload queues a rebuild of a new generation.",
)
def update_workflow(
    workflow_id: UUID, body: WorkflowUpdate, who: Auth, context: Context
) -> WorkflowOut:
    with context.transaction() as conn:
        updated = workflows.update(
            conn, who.user_id, workflow_id, body, secrets=context.secrets, rules=context.rules
        )
        return WorkflowOut.of(updated)


@router.post(
    "/{workflow_id}/terminate",
    response_model=WorkflowOut,
    summary="Terminate: no new jobs, pending ones are cancelled. Final; history is kept.",
)
def terminate_workflow(
    workflow_id: UUID, who: Auth, context: Context, key: IdempotencyKey = None
) -> JSONResponse:
    def operation(conn: Conn) -> tuple[int, Any]:
        done = workflows.terminate(conn, who.user_id, workflow_id)
        return 200, WorkflowOut.of(done).model_dump(mode="json")

    fingerprint = idempotency.fingerprint("POST", f"/workflows/{workflow_id}/terminate", "")
    return run_idempotent(context, who, key, fingerprint, operation)


@router.delete(
    "/{workflow_id}",
    status_code=204,
    summary="Terminate, then delete the workflow with its jobs and logs.",
)
def delete_workflow(workflow_id: UUID, who: Auth, context: Context) -> Response:
    with context.transaction() as conn:
        workflows.delete(conn, who.user_id, workflow_id)
    return Response(status_code=204)
