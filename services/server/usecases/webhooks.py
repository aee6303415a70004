"""Webhook use cases: add an endpoint (its secret shown once), list, delete, read deliveries."""

from __future__ import annotations

from uuid import UUID

from chronoverse.accounts import Principal
from chronoverse.webhooks import DeliveryStatus
from services.server.context import ServerContext
from services.server.schemas import (
    WebhookAttemptOut,
    WebhookCreate,
    WebhookCreatedOut,
    WebhookDeliveryOut,
    WebhookDeliveryPage,
    WebhookOut,
    WebhookPage,
    WebhookQuery,
)
from services.server.store import webhooks
from services.server.store.webhooks import Delivery, Webhook


def _out(webhook: Webhook) -> WebhookOut:
    return WebhookOut(
        id=webhook.id,
        url=webhook.url,
        events=list(webhook.events),
        workflow_id=webhook.workflow_id,
        created_at=webhook.created_at,
    )


def _delivery_out(delivery: Delivery) -> WebhookDeliveryOut:
    pending = delivery.status is DeliveryStatus.PENDING
    return WebhookDeliveryOut(
        id=delivery.id,
        event=delivery.event,
        status=delivery.status,
        attempts=delivery.attempts,
        next_attempt_at=delivery.next_attempt_at if pending else None,
        created_at=delivery.created_at,
        finished_at=delivery.finished_at,
        payload=delivery.payload,
        attempt_log=[
            WebhookAttemptOut(
                attempt=a.attempt,
                attempted_at=a.attempted_at,
                status_code=a.status_code,
                duration_ms=a.duration_ms,
                error=a.error,
            )
            for a in delivery.attempt_log
        ],
    )


class WebhookCases:
    def __init__(self, context: ServerContext) -> None:
        self._context = context

    def create(self, who: Principal, request: WebhookCreate) -> WebhookCreatedOut:
        """A new endpoint; the result carries its signing secret, which is never shown again."""
        context = self._context
        with context.transaction() as conn:
            created = webhooks.create(
                conn,
                who.user_id,
                url=request.url,
                events=list(request.events),
                workflow_id=request.workflow_id,
                secrets=context.secrets,
                egress=context.rules.egress,
                limit=context.settings.max_webhooks_per_user,
            )
        return WebhookCreatedOut(**_out(created.webhook).model_dump(), secret=created.secret)

    def list(self, who: Principal, query: WebhookQuery) -> WebhookPage:
        with self._context.transaction() as conn:
            page = webhooks.list_page(conn, who.user_id, limit=query.limit, cursor=query.cursor)
        return WebhookPage(webhooks=[_out(w) for w in page.items], next_cursor=page.next_cursor)

    def delete(self, who: Principal, webhook_id: UUID) -> None:
        with self._context.transaction() as conn:
            webhooks.delete(conn, who.user_id, webhook_id)

    def deliveries(
        self, who: Principal, webhook_id: UUID, query: WebhookQuery
    ) -> WebhookDeliveryPage:
        with self._context.transaction() as conn:
            page = webhooks.deliveries_page(
                conn, who.user_id, webhook_id, limit=query.limit, cursor=query.cursor
            )
        return WebhookDeliveryPage(
            deliveries=[_delivery_out(d) for d in page.items], next_cursor=page.next_cursor
        )
