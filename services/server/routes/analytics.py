"""/analytics and /workflows/{id}/analytics: jobs, durations and log lines over a window."""

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query

from services.server.http_errors import ERRORS
from services.server.routes.deps import Api, Auth
from services.server.schemas import AnalyticsQuery, UserAnalyticsOut, WorkflowAnalyticsOut

router = APIRouter(tags=["analytics"], responses=ERRORS)


@router.get(
    "/analytics",
    response_model=UserAnalyticsOut,
    summary="The caller's jobs created since `since` (default 7 days ago, at most 90): by "
    "status, success rate, p50 and p95 duration, execution time, log lines; and workflows now.",
)
def user_analytics(
    who: Auth, api: Api, query: Annotated[AnalyticsQuery, Query()]
) -> UserAnalyticsOut:
    return api.analytics.of_user(who, query)


@router.get(
    "/workflows/{workflow_id}/analytics",
    response_model=WorkflowAnalyticsOut,
    summary="The same figures over one workflow's jobs; 404 for a workflow of another user.",
)
def workflow_analytics(
    workflow_id: UUID, who: Auth, api: Api, query: Annotated[AnalyticsQuery, Query()]
) -> WorkflowAnalyticsOut:
    return api.analytics.of_workflow(who, workflow_id, query)
