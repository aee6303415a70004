"""gRPC WorkflowService: the workflow use cases over protobuf."""

from __future__ import annotations

from datetime import UTC
from typing import Any

import grpc

from chronoverse.v1 import workflows_pb2, workflows_pb2_grpc
from services.server.grpc import convert
from services.server.grpc.base import Servicer, fields, metadata
from services.server.grpc.errors import handles_errors
from services.server.schemas import (
    FireQuery,
    PreviewQuery,
    ScheduleSpec,
    WorkflowCreate,
    WorkflowQuery,
    WorkflowUpdate,
    parse_model,
)

SCHEDULE_FIELDS = ("interval", "cron", "timezone", "catchup", "catchup_window_minutes")


def _dst(request: Any) -> dict[str, Any]:
    if not request.HasField("dst"):
        return {}
    return {"dst": {"gap": request.dst.gap or "shift", "overlap": request.dst.overlap or "once"}}


def _preview_query(request: Any) -> PreviewQuery:
    data: dict[str, Any] = fields(request, ("count",))
    if request.HasField("from"):
        data["from"] = getattr(request, "from").ToDatetime(tzinfo=UTC)
    return parse_model(PreviewQuery, data)


def _payload(payload_json: str) -> Any:
    # An empty string is the proto3 default: no payload, as an omitted field over HTTP.
    return payload_json if payload_json else {}


class WorkflowService(Servicer, workflows_pb2_grpc.WorkflowServiceServicer):
    @handles_errors
    def CreateWorkflow(
        self, request: workflows_pb2.CreateWorkflowRequest, context: grpc.ServicerContext
    ) -> workflows_pb2.Workflow:
        who = self.who(context)
        data: dict[str, Any] = {
            "name": request.name,
            "kind": request.kind,
            "payload": _payload(request.payload_json),
            **fields(
                request, ("max_consecutive_job_failures_allowed", "retain_logs", *SCHEDULE_FIELDS)
            ),
            **_dst(request),
        }
        body = parse_model(WorkflowCreate, data)
        key = metadata(context, "idempotency-key")
        return convert.workflow(self.api.workflows.create(who, body, idempotency_key=key).body)

    @handles_errors
    def GetWorkflow(
        self, request: workflows_pb2.GetWorkflowRequest, context: grpc.ServicerContext
    ) -> workflows_pb2.Workflow:
        who = self.who(context)
        return convert.workflow(self.api.workflows.get(who, convert.uuid(request.id)))

    @handles_errors
    def ListWorkflows(
        self, request: workflows_pb2.ListWorkflowsRequest, context: grpc.ServicerContext
    ) -> workflows_pb2.ListWorkflowsResponse:
        who = self.who(context)
        data = fields(request, ("kind", "build_status", "terminated", "name"))
        if request.limit:  # 0 is proto3's unset: the default page size
            data["limit"] = request.limit
        if request.cursor:
            data["cursor"] = request.cursor
        page = self.api.workflows.list(who, parse_model(WorkflowQuery, data))
        return workflows_pb2.ListWorkflowsResponse(
            workflows=[convert.workflow(w) for w in page.workflows],
            next_cursor=page.next_cursor or "",
        )

    @handles_errors
    def UpdateWorkflow(
        self, request: workflows_pb2.UpdateWorkflowRequest, context: grpc.ServicerContext
    ) -> workflows_pb2.Workflow:
        who = self.who(context)
        data = fields(
            request,
            ("name", "max_consecutive_job_failures_allowed", "retain_logs", *SCHEDULE_FIELDS),
        )
        data.update(_dst(request))
        if request.HasField("payload_json"):
            data["payload"] = _payload(request.payload_json)
        body = parse_model(WorkflowUpdate, data)
        return convert.workflow(self.api.workflows.update(who, convert.uuid(request.id), body))

    @handles_errors
    def TerminateWorkflow(
        self, request: workflows_pb2.TerminateWorkflowRequest, context: grpc.ServicerContext
    ) -> workflows_pb2.Workflow:
        who = self.who(context)
        key = metadata(context, "idempotency-key")
        done = self.api.workflows.terminate(who, convert.uuid(request.id), idempotency_key=key)
        return convert.workflow(done.body)

    @handles_errors
    def DeleteWorkflow(
        self, request: workflows_pb2.DeleteWorkflowRequest, context: grpc.ServicerContext
    ) -> workflows_pb2.DeleteWorkflowResponse:
        self.api.workflows.delete(self.who(context), convert.uuid(request.id))
        return workflows_pb2.DeleteWorkflowResponse()

    @handles_errors
    def PauseWorkflow(
        self, request: workflows_pb2.PauseWorkflowRequest, context: grpc.ServicerContext
    ) -> workflows_pb2.Workflow:
        who = self.who(context)
        return convert.workflow(self.api.schedules.pause(who, convert.uuid(request.id)))

    @handles_errors
    def ResumeWorkflow(
        self, request: workflows_pb2.ResumeWorkflowRequest, context: grpc.ServicerContext
    ) -> workflows_pb2.Workflow:
        who = self.who(context)
        return convert.workflow(self.api.schedules.resume(who, convert.uuid(request.id)))

    @handles_errors
    def GetSchedule(
        self, request: workflows_pb2.GetScheduleRequest, context: grpc.ServicerContext
    ) -> workflows_pb2.SchedulePreview:
        who = self.who(context)
        query = _preview_query(request)
        preview = self.api.schedules.next_runs(who, convert.uuid(request.id), query)
        return convert.schedule_preview(preview)

    @handles_errors
    def PreviewSchedule(
        self, request: workflows_pb2.PreviewScheduleRequest, context: grpc.ServicerContext
    ) -> workflows_pb2.SchedulePreview:
        self.who(context)
        spec = parse_model(
            ScheduleSpec, {**fields(request, ("interval", "cron", "timezone")), **_dst(request)}
        )
        return convert.schedule_preview(self.api.schedules.preview(spec, _preview_query(request)))

    @handles_errors
    def ListFires(
        self, request: workflows_pb2.ListFiresRequest, context: grpc.ServicerContext
    ) -> workflows_pb2.ListFiresResponse:
        who = self.who(context)
        data: dict[str, Any] = {}
        if request.limit:  # 0 is proto3's unset: the default page size
            data["limit"] = request.limit
        if request.cursor:
            data["cursor"] = request.cursor
        workflow_id = convert.uuid(request.workflow_id, "workflow_id")
        page = self.api.schedules.fires(who, workflow_id, parse_model(FireQuery, data))
        return convert.fire_page(page)
