"""Analytics use cases: a user's jobs and workflows, and one workflow's jobs, over a window."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, TypeVar
from uuid import UUID

from chronoverse.accounts import Principal
from chronoverse.domain import BuildStatus, JobStatus, WorkflowState
from services.server.context import ServerContext
from services.server.schemas import (
    AnalyticsQuery,
    BuildStatusCountsOut,
    JobAnalyticsOut,
    JobStatusCountsOut,
    UserAnalyticsOut,
    WorkflowAnalyticsOut,
    WorkflowCountsOut,
    WorkflowStateCountsOut,
)
from services.server.store import analytics
from services.server.store.analytics import JobStats, Window, WorkflowStats


class AnalyticsCases:
    def __init__(self, context: ServerContext) -> None:
        self._context = context

    def of_user(self, who: Principal, query: AnalyticsQuery) -> UserAnalyticsOut:
        span = analytics.window(query.since, now=datetime.now(UTC))
        with self._context.transaction() as conn:
            jobs = analytics.user_jobs(conn, who.user_id, span.since)
            workflows = analytics.user_workflows(conn, who.user_id)
        return _figures(UserAnalyticsOut, span, jobs, workflows=_workflow_counts(workflows))

    def of_workflow(
        self, who: Principal, workflow_id: UUID, query: AnalyticsQuery
    ) -> WorkflowAnalyticsOut:
        span = analytics.window(query.since, now=datetime.now(UTC))
        with self._context.transaction() as conn:
            jobs = analytics.workflow_jobs(conn, who.user_id, workflow_id, span.since)
        return _figures(WorkflowAnalyticsOut, span, jobs, workflow_id=workflow_id)


Figures = TypeVar("Figures", bound=JobAnalyticsOut)


def _figures(model: type[Figures], span: Window, stats: JobStats, **more: Any) -> Figures:
    return model(
        since=span.since,
        until=span.until,
        jobs=stats.total,
        jobs_by_status=JobStatusCountsOut(
            **{status.value: stats.by_status[status] for status in JobStatus}
        ),
        success_rate=stats.success_rate,
        duration_p50_s=stats.duration_p50_s,
        duration_p95_s=stats.duration_p95_s,
        execution_time_s=stats.execution_time_s,
        log_lines=stats.log_lines,
        **more,
    )


def _workflow_counts(stats: WorkflowStats) -> WorkflowCountsOut:
    return WorkflowCountsOut(
        total=stats.total,
        by_state=WorkflowStateCountsOut(
            **{state.value: stats.by_state[state] for state in WorkflowState}
        ),
        by_build_status=BuildStatusCountsOut(
            **{status.value: stats.by_build_status[status] for status in BuildStatus}
        ),
    )
