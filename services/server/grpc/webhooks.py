"""gRPC WebhookService: endpoints that receive signed state flips, and their deliveries."""

from __future__ import annotations

import json
from typing import Any

import grpc

from chronoverse.v1 import webhooks_pb2, webhooks_pb2_grpc
from services.server.grpc import convert
from services.server.grpc.base import Servicer
from services.server.grpc.errors import handles_errors
from services.server.schemas import (
    WebhookCreate,
    WebhookDeliveryOut,
    WebhookOut,
    WebhookQuery,
    parse_model,
)


def _webhook(out: WebhookOut) -> webhooks_pb2.Webhook:
    message = webhooks_pb2.Webhook(
        id=str(out.id), url=out.url, events=out.events, created_at=convert.timestamp(out.created_at)
    )
    if out.workflow_id is not None:
        message.workflow_id = str(out.workflow_id)
    return message


def _delivery(out: WebhookDeliveryOut) -> webhooks_pb2.WebhookDelivery:
    message = webhooks_pb2.WebhookDelivery(
        id=str(out.id),
        event=out.event,
        status=out.status.value,
        attempts=out.attempts,
        created_at=convert.timestamp(out.created_at),
        payload_json=json.dumps(out.payload),
    )
    if out.next_attempt_at is not None:
        message.next_attempt_at.CopyFrom(convert.timestamp(out.next_attempt_at))
    if out.finished_at is not None:
        message.finished_at.CopyFrom(convert.timestamp(out.finished_at))
    for a in out.attempt_log:
        attempt = message.attempt_log.add(
            attempt=a.attempt,
            attempted_at=convert.timestamp(a.attempted_at),
            duration_ms=a.duration_ms,
        )
        if a.status_code is not None:
            attempt.status_code = a.status_code
        if a.error is not None:
            attempt.error = a.error
    return message


def _page(limit: int, cursor: str) -> WebhookQuery:
    data: dict[str, Any] = {}
    if limit:  # 0 is proto3's unset: the default page size
        data["limit"] = limit
    if cursor:
        data["cursor"] = cursor
    return parse_model(WebhookQuery, data)


class WebhookService(Servicer, webhooks_pb2_grpc.WebhookServiceServicer):
    @handles_errors
    def CreateWebhook(
        self, request: webhooks_pb2.CreateWebhookRequest, context: grpc.ServicerContext
    ) -> webhooks_pb2.CreatedWebhook:
        who = self.who(context)
        data: dict[str, Any] = {"url": request.url, "events": list(request.events)}
        if request.HasField("workflow_id"):
            data["workflow_id"] = convert.uuid(request.workflow_id, "workflow_id")
        created = self.api.webhooks.create(who, parse_model(WebhookCreate, data))
        return webhooks_pb2.CreatedWebhook(webhook=_webhook(created), secret=created.secret)

    @handles_errors
    def ListWebhooks(
        self, request: webhooks_pb2.ListWebhooksRequest, context: grpc.ServicerContext
    ) -> webhooks_pb2.ListWebhooksResponse:
        who = self.who(context)
        page = self.api.webhooks.list(who, _page(request.limit, request.cursor))
        return webhooks_pb2.ListWebhooksResponse(
            webhooks=[_webhook(w) for w in page.webhooks], next_cursor=page.next_cursor or ""
        )

    @handles_errors
    def DeleteWebhook(
        self, request: webhooks_pb2.DeleteWebhookRequest, context: grpc.ServicerContext
    ) -> webhooks_pb2.DeleteWebhookResponse:
        who = self.who(context)
        self.api.webhooks.delete(who, convert.uuid(request.id))
        return webhooks_pb2.DeleteWebhookResponse()

    @handles_errors
    def ListWebhookDeliveries(
        self, request: webhooks_pb2.ListWebhookDeliveriesRequest, context: grpc.ServicerContext
    ) -> webhooks_pb2.ListWebhookDeliveriesResponse:
        who = self.who(context)
        webhook_id = convert.uuid(request.webhook_id, "webhook_id")
        page = self.api.webhooks.deliveries(who, webhook_id, _page(request.limit, request.cursor))
        return webhooks_pb2.ListWebhookDeliveriesResponse(
            deliveries=[_delivery(d) for d in page.deliveries], next_cursor=page.next_cursor or ""
        )
