"""gRPC AnalyticsService: a user's and a workflow's figures over a window."""

from __future__ import annotations

from datetime import UTC
from typing import Any

import grpc

from chronoverse.v1 import analytics_pb2, analytics_pb2_grpc
from services.server.grpc import convert
from services.server.grpc.base import Servicer
from services.server.grpc.errors import handles_errors
from services.server.schemas import (
    AnalyticsQuery,
    JobAnalyticsOut,
    WorkflowCountsOut,
    parse_model,
)


def _query(request: Any) -> AnalyticsQuery:
    data: dict[str, Any] = {}
    if request.HasField("since"):
        data["since"] = request.since.ToDatetime(tzinfo=UTC)
    return parse_model(AnalyticsQuery, data)


def _jobs(figures: JobAnalyticsOut) -> analytics_pb2.JobAnalytics:
    counts = figures.jobs_by_status
    return analytics_pb2.JobAnalytics(
        since=convert.timestamp(figures.since),
        until=convert.timestamp(figures.until),
        jobs=figures.jobs,
        jobs_by_status=analytics_pb2.JobStatusCounts(
            pending=counts.PENDING,
            queued=counts.QUEUED,
            running=counts.RUNNING,
            completed=counts.COMPLETED,
            failed=counts.FAILED,
            canceled=counts.CANCELED,
        ),
        success_rate=figures.success_rate,
        duration_p50_s=figures.duration_p50_s,
        duration_p95_s=figures.duration_p95_s,
        execution_time_s=figures.execution_time_s,
        log_lines=figures.log_lines,
    )


def _workflows(counts: WorkflowCountsOut) -> analytics_pb2.WorkflowCounts:
    builds = counts.by_build_status
    return analytics_pb2.WorkflowCounts(
        total=counts.total,
        by_state=analytics_pb2.WorkflowStateCounts(**counts.by_state.model_dump()),
        by_build_status=analytics_pb2.BuildStatusCounts(
            queued=builds.QUEUED,
            started=builds.STARTED,
            completed=builds.COMPLETED,
            failed=builds.FAILED,
        ),
    )


class AnalyticsService(Servicer, analytics_pb2_grpc.AnalyticsServiceServicer):
    @handles_errors
    def GetUserAnalytics(
        self, request: analytics_pb2.GetUserAnalyticsRequest, context: grpc.ServicerContext
    ) -> analytics_pb2.UserAnalytics:
        figures = self.api.analytics.of_user(self.who(context), _query(request))
        return analytics_pb2.UserAnalytics(
            jobs=_jobs(figures), workflows=_workflows(figures.workflows)
        )

    @handles_errors
    def GetWorkflowAnalytics(
        self, request: analytics_pb2.GetWorkflowAnalyticsRequest, context: grpc.ServicerContext
    ) -> analytics_pb2.WorkflowAnalytics:
        who = self.who(context)
        workflow_id = convert.uuid(request.workflow_id, "workflow_id")
        figures = self.api.analytics.of_workflow(who, workflow_id, _query(request))
        return analytics_pb2.WorkflowAnalytics(workflow_id=str(workflow_id), jobs=_jobs(figures))
