"""Workflow use cases: create, get, list, count, update, terminate, delete, each for its owner
only."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from chronoverse.accounts import Principal
from chronoverse.domain import WorkflowState
from chronoverse.postgres import Conn
from services.server.context import ServerContext
from services.server.schemas import (
    WorkflowCountersOut,
    WorkflowCreate,
    WorkflowOut,
    WorkflowPage,
    WorkflowQuery,
    WorkflowUpdate,
)
from services.server.store import quotas, workflows
from services.server.usecases.idempotent import Replayable, run_once


class WorkflowCases:
    def __init__(self, context: ServerContext) -> None:
        self._context = context

    def create(
        self, who: Principal, request: WorkflowCreate, *, idempotency_key: str | None
    ) -> Replayable:
        context = self._context

        def operation(conn: Conn) -> tuple[int, dict[str, Any]]:
            quotas.check_workflows(conn, who.user_id, limit=context.settings.max_workflows_per_user)
            created = workflows.create(
                conn, who.user_id, request, secrets=context.secrets, rules=context.rules
            )
            return 201, WorkflowOut.of(created).model_dump(mode="json")

        return run_once(
            context,
            who,
            idempotency_key,
            method="POST",
            path="/workflows",
            canonical_body=request.model_dump_json(),
            operation=operation,
        )

    def get(self, who: Principal, workflow_id: UUID) -> WorkflowOut:
        with self._context.transaction() as conn:
            return WorkflowOut.of(workflows.get(conn, who.user_id, workflow_id))

    def list(
        self,
        who: Principal,
        query: WorkflowQuery,
        *,
        state: WorkflowState | None = None,
        failing: bool | None = None,
    ) -> WorkflowPage:
        """A page of the caller's workflows, newest first; the dashboard also filters by
        ``state`` and ``failing`` (what its counters count)."""
        page_filter = workflows.ListFilter(
            kind=query.kind,
            build_status=query.build_status,
            terminated=query.terminated,
            name_contains=query.name,
            state=state,
            failing=failing,
            limit=query.limit,
            cursor=query.cursor,
        )
        with self._context.transaction() as conn:
            page = workflows.list_page(conn, who.user_id, page_filter)
        return WorkflowPage(
            workflows=[WorkflowOut.of(w) for w in page.workflows], next_cursor=page.next_cursor
        )

    def counters(self, who: Principal) -> WorkflowCountersOut:
        """The caller's workflows by state, and the failing ones."""
        with self._context.transaction() as conn:
            counts = workflows.counters(conn, who.user_id)
        return WorkflowCountersOut(
            active=counts.active,
            paused=counts.paused,
            terminated=counts.terminated,
            failing=counts.failing,
        )

    def update(self, who: Principal, workflow_id: UUID, request: WorkflowUpdate) -> WorkflowOut:
        context = self._context
        with context.transaction() as conn:
            updated = workflows.update(
                conn,
                who.user_id,
                workflow_id,
                request,
                secrets=context.secrets,
                rules=context.rules,
            )
            return WorkflowOut.of(updated)

    def terminate(
        self, who: Principal, workflow_id: UUID, *, idempotency_key: str | None
    ) -> Replayable:
        public_url = self._context.settings.public_url

        def operation(conn: Conn) -> tuple[int, dict[str, Any]]:
            done = workflows.terminate(conn, who.user_id, workflow_id, public_url=public_url)
            return 200, WorkflowOut.of(done).model_dump(mode="json")

        return run_once(
            self._context,
            who,
            idempotency_key,
            method="POST",
            path=f"/workflows/{workflow_id}/terminate",
            canonical_body="",
            operation=operation,
        )

    def delete(self, who: Principal, workflow_id: UUID) -> None:
        with self._context.transaction() as conn:
            workflows.delete(conn, who.user_id, workflow_id)
