"""Job use cases: run a workflow now (a MANUAL job), list a workflow's jobs, get one, and its
history."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from chronoverse.accounts import Principal
from chronoverse.postgres import Conn
from services.server.context import ServerContext
from services.server.schemas import JobEventsOut, JobOut, JobPageOut, JobQuery
from services.server.store import job_events, jobs, quotas
from services.server.usecases.idempotent import Replayable, run_once


class JobCases:
    def __init__(self, context: ServerContext) -> None:
        self._context = context

    def run(self, who: Principal, workflow_id: UUID, *, idempotency_key: str | None) -> Replayable:
        context = self._context

        def operation(conn: Conn) -> tuple[int, dict[str, Any]]:
            quotas.lock_active_jobs(conn, who.user_id)
            job = jobs.run_now(conn, who.user_id, workflow_id, idempotency_key=idempotency_key)
            quotas.check_active_jobs(
                conn, who.user_id, limit=context.settings.max_active_jobs_per_user
            )
            # Last: only a run that is started counts (a replayed key never gets here).
            context.run_throttle.hit(who.user_id)
            return 201, JobOut.of(job).model_dump(mode="json")

        return run_once(
            context,
            who,
            idempotency_key,
            method="POST",
            path=f"/workflows/{workflow_id}/jobs",
            canonical_body="",
            operation=operation,
        )

    def list(self, who: Principal, workflow_id: UUID, query: JobQuery) -> JobPageOut:
        page_filter = jobs.JobFilter(
            status=query.status, trigger=query.trigger, limit=query.limit, cursor=query.cursor
        )
        with self._context.transaction() as conn:
            page = jobs.list_page(conn, who.user_id, workflow_id, page_filter)
        return JobPageOut(jobs=[JobOut.of(j) for j in page.jobs], next_cursor=page.next_cursor)

    def get(self, who: Principal, workflow_id: UUID, job_id: UUID) -> JobOut:
        with self._context.transaction() as conn:
            return JobOut.of(jobs.get(conn, who.user_id, workflow_id, job_id))

    def events(self, who: Principal, workflow_id: UUID, job_id: UUID) -> JobEventsOut:
        """The job's history, oldest first (the newest MAX_JOB_EVENTS events)."""
        with self._context.transaction() as conn:
            return JobEventsOut.of(job_events.history(conn, who.user_id, workflow_id, job_id))
