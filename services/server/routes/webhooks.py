"""/webhooks: endpoints that receive signed state flips, and their deliveries."""

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, Response

from services.server.http_errors import ERRORS
from services.server.routes.deps import Api, Auth
from services.server.schemas import (
    WebhookCreate,
    WebhookCreatedOut,
    WebhookDeliveryPage,
    WebhookPage,
    WebhookQuery,
)

router = APIRouter(prefix="/webhooks", tags=["webhooks"], responses=ERRORS)


@router.post(
    "",
    status_code=201,
    response_model=WebhookCreatedOut,
    summary="Add an endpoint for workflow.failing, workflow.recovered, workflow.terminated and "
    "build.failed events. The response carries its signing secret, shown only this once. "
    "At most CHRONOVERSE_MAX_WEBHOOKS_PER_USER endpoints (409 beyond).",
)
def create_webhook(body: WebhookCreate, who: Auth, api: Api) -> WebhookCreatedOut:
    return api.webhooks.create(who, body)


@router.get("", response_model=WebhookPage, summary="Your endpoints, newest first (no secrets).")
def list_webhooks(who: Auth, api: Api, query: Annotated[WebhookQuery, Query()]) -> WebhookPage:
    return api.webhooks.list(who, query)


@router.delete(
    "/{webhook_id}",
    status_code=204,
    summary="Delete an endpoint and its deliveries; pending ones are not sent.",
)
def delete_webhook(webhook_id: UUID, who: Auth, api: Api) -> Response:
    api.webhooks.delete(who, webhook_id)
    return Response(status_code=204)


@router.get(
    "/{webhook_id}/deliveries",
    response_model=WebhookDeliveryPage,
    summary="The endpoint's deliveries, newest first, each with every attempt: status code, "
    "duration and error.",
)
def list_deliveries(
    webhook_id: UUID, who: Auth, api: Api, query: Annotated[WebhookQuery, Query()]
) -> WebhookDeliveryPage:
    return api.webhooks.deliveries(who, webhook_id, query)
