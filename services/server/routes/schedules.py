"""Schedules: pause and resume, the next runs (of a workflow, or of a schedule not saved), and the
fire ledger. See docs/scheduling.md."""

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query

from services.server.http_errors import ERRORS
from services.server.routes.deps import Api, Auth
from services.server.schemas import (
    FirePageOut,
    FireQuery,
    PreviewQuery,
    SchedulePreviewOut,
    ScheduleSpec,
    WorkflowOut,
)

router = APIRouter(tags=["schedules"], responses=ERRORS)


@router.post(
    "/workflows/{workflow_id}/pause",
    response_model=WorkflowOut,
    summary="Pause: no automatic jobs and no counted failures until resumed; manual runs are "
    "still allowed. Pausing a paused workflow changes nothing; 409 once terminated.",
)
def pause_workflow(workflow_id: UUID, who: Auth, api: Api) -> WorkflowOut:
    return api.schedules.pause(who, workflow_id)


@router.post(
    "/workflows/{workflow_id}/resume",
    response_model=WorkflowOut,
    summary="Resume: the slots that fell while paused follow the catch-up policy now (run, or "
    "PAUSED in the fire ledger).",
)
def resume_workflow(workflow_id: UUID, who: Auth, api: Api) -> WorkflowOut:
    return api.schedules.resume(who, workflow_id)


@router.get(
    "/workflows/{workflow_id}/schedule",
    response_model=SchedulePreviewOut,
    summary="The workflow's next runs, at or after `from` (default now): UTC, local wall time, "
    "and a note at a daylight-saving change.",
)
def workflow_schedule(
    workflow_id: UUID, who: Auth, api: Api, query: Annotated[PreviewQuery, Query()]
) -> SchedulePreviewOut:
    return api.schedules.next_runs(who, workflow_id, query)


@router.post(
    "/schedules/preview",
    response_model=SchedulePreviewOut,
    summary="The next runs of a schedule given in the body (interval, or cron with timezone and "
    "dst); nothing is saved.",
)
def preview_schedule(
    body: ScheduleSpec, who: Auth, api: Api, query: Annotated[PreviewQuery, Query()]
) -> SchedulePreviewOut:
    return api.schedules.preview(body, query)


@router.get(
    "/workflows/{workflow_id}/fires",
    response_model=FirePageOut,
    summary="The fire ledger, newest first: every slot FIRED (with its job), or OVERLAP, MISSED "
    "or PAUSED.",
)
def workflow_fires(
    workflow_id: UUID, who: Auth, api: Api, query: Annotated[FireQuery, Query()]
) -> FirePageOut:
    return api.schedules.fires(who, workflow_id, query)
