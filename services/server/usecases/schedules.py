"""Schedule use cases: pause, resume, preview the next runs (saved or not), the fire ledger."""

from __future__ import annotations

from uuid import UUID

from chronoverse.accounts import Principal
from chronoverse.domain import utcnow
from chronoverse.schedules import Fire, Schedule, preview
from services.server.context import ServerContext
from services.server.schemas import (
    FireEntryOut,
    FireOut,
    FirePageOut,
    FireQuery,
    PreviewQuery,
    SchedulePreviewOut,
    ScheduleSpec,
    WorkflowOut,
)
from services.server.store import schedules, workflows


class ScheduleCases:
    def __init__(self, context: ServerContext) -> None:
        self._context = context

    def pause(self, who: Principal, workflow_id: UUID) -> WorkflowOut:
        with self._context.transaction() as conn:
            return WorkflowOut.of(schedules.pause(conn, who.user_id, workflow_id))

    def resume(self, who: Principal, workflow_id: UUID) -> WorkflowOut:
        with self._context.transaction() as conn:
            resumed = schedules.resume(conn, who.user_id, workflow_id, now=utcnow())
            return WorkflowOut.of(resumed)

    def next_runs(
        self, who: Principal, workflow_id: UUID, query: PreviewQuery
    ) -> SchedulePreviewOut:
        """The saved workflow's next runs: an interval continues its own series."""
        with self._context.transaction() as conn:
            workflow = workflows.get(conn, who.user_id, workflow_id)
        if workflow.is_terminated:
            return SchedulePreviewOut(next=[])
        start = query.start or utcnow()
        fires = preview(
            workflow.schedule, count=query.count, start=start, anchor=workflow.next_run_at
        )
        return _preview_out(fires)

    def preview(self, spec: ScheduleSpec, query: PreviewQuery) -> SchedulePreviewOut:
        """The next runs of a schedule that is not saved (a form as the user types)."""
        schedule: Schedule = spec.schedule()
        return _preview_out(preview(schedule, count=query.count, start=query.start or utcnow()))

    def fires(self, who: Principal, workflow_id: UUID, query: FireQuery) -> FirePageOut:
        with self._context.transaction() as conn:
            page = schedules.list_fires(
                conn, who.user_id, workflow_id, limit=query.limit, cursor=query.cursor
            )
        return FirePageOut(
            fires=[
                FireEntryOut(
                    scheduled_at=f.scheduled_at,
                    first_scheduled_at=f.first_scheduled_at,
                    outcome=f.outcome,
                    job_id=f.job_id,
                    slots=f.slots,
                    detail=f.detail or None,
                )
                for f in page.fires
            ],
            next_cursor=page.next_cursor,
        )


def _preview_out(fires: list[Fire]) -> SchedulePreviewOut:
    return SchedulePreviewOut(next=[FireOut(at=f.at, local=f.local, note=f.note) for f in fires])
