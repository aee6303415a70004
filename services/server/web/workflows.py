"""The workflows pages: the list (search, filters, counters, pages), the new and edit form with
its live next-runs preview, and the workflow page with its actions, jobs and fire ledger.

Each page parses its input into the application layer's typed requests and calls its use cases,
as the JSON API does (:mod:`services.server.routes.workflows`); what those refuse is shown on the
page, each field's error next to its input. Every state in the list is in its URL, and every
state-changing form carries the session's CSRF token. See docs/dashboard.md, Pages.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any
from urllib.parse import urlencode
from uuid import UUID, uuid4

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.datastructures import FormData

from chronoverse.accounts import Principal
from chronoverse.domain import BuildStatus, JobStatus, JobTrigger, WorkflowKind, WorkflowState
from chronoverse.errors import (
    ChronoverseError,
    ConflictError,
    InvalidFieldsError,
    RateLimitedError,
)
from services.server.routes.deps import Api
from services.server.schemas import (
    AnalyticsQuery,
    FireQuery,
    JobPageOut,
    JobQuery,
    PreviewQuery,
    ScheduleSpec,
    WorkflowOut,
    WorkflowQuery,
    parse_model,
)
from services.server.usecases import Application
from services.server.web.render import page
from services.server.web.session import CsrfChecked, WebUser
from services.server.web.workflow_form import GENERAL, WorkflowForm, errors_by_input, zone_names

router = APIRouter(prefix="/ui/workflows", include_in_schema=False)

LIST = "/ui/workflows"
JOBS_PER_PAGE = 20
FIRES_PER_PAGE = 20
NEXT_RUNS = 5
# The list's filters, in the order its URLs spell them.
LIST_FILTERS = ("name", "kind", "state", "build_status", "failing", "limit")


class ListPageQuery(WorkflowQuery):
    """The list page's query: the API's filters, and the two its counters add."""

    state: WorkflowState | None = None
    failing: bool | None = None


async def posted_form(request: Request) -> FormData:
    return await request.form()


PostedForm = Annotated[FormData, Depends(posted_form)]


def _given(values: Mapping[str, str]) -> dict[str, str]:
    """The inputs that have a value: an empty select or search box means "any"."""
    return {name: value for name, value in values.items() if value.strip()}


def _status_of(error: ChronoverseError) -> int:
    if isinstance(error, InvalidFieldsError):
        return 422
    if isinstance(error, RateLimitedError):
        return 429
    return 409


# --- the list ------------------------------------------------------------------------------------


@router.get("")
def list_page(
    request: Request,
    who: WebUser,
    api: Api,
    name: str = "",
    kind: str = "",
    state: str = "",
    build_status: str = "",
    failing: str = "",
    limit: str = "",
    cursor: str = "",
) -> HTMLResponse:
    filters = _given(
        {
            "name": name,
            "kind": kind,
            "state": state,
            "build_status": build_status,
            "failing": failing,
            "limit": limit,
        }
    )
    errors: list[str] = []
    workflows: list[WorkflowOut] = []
    next_cursor = None
    try:
        query = parse_model(ListPageQuery, {**filters, **_given({"cursor": cursor})})
        found = api.workflows.list(who, query, state=query.state, failing=query.failing)
        workflows, next_cursor = found.workflows, found.next_cursor
    except InvalidFieldsError as exc:
        errors = [f"{e.field}: {e.message}" for e in exc.errors]

    def list_url(**changes: str | None) -> str:
        """This list with some filters changed (None: removed), from its first page."""
        merged = {**filters, **changes}
        ordered = [(k, merged[k]) for k in (*LIST_FILTERS, "cursor") if merged.get(k)]
        return f"{LIST}?{urlencode(ordered)}" if ordered else LIST

    return page(
        request,
        "workflows/list.html",
        {
            "filters": filters,
            "errors": errors,
            "workflows": workflows,
            "counters": api.workflows.counters(who),
            "next_url": list_url(cursor=next_cursor) if next_cursor else None,
            "first_url": list_url() if cursor else None,
            "list_url": list_url,
            "kinds": list(WorkflowKind),
            "states": list(WorkflowState),
            "build_statuses": list(BuildStatus),
        },
        status_code=422 if errors else 200,
    )


# --- the form: new, edit, and the next-runs preview ----------------------------------------------


def _form_page(
    request: Request,
    form: WorkflowForm,
    *,
    workflow: WorkflowOut | None = None,
    errors: dict[str, list[str]] | None = None,
    idempotency_key: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    return page(
        request,
        "workflows/form.html",
        {
            "form": form,
            "workflow": workflow,
            "errors": errors or {},
            "idempotency_key": idempotency_key or str(uuid4()),
            "zones": zone_names(),
            "kinds": list(WorkflowKind),
        },
        status_code=status_code,
    )


@router.get("/new")
def new_page(request: Request, who: WebUser) -> HTMLResponse:
    return _form_page(request, WorkflowForm())


@router.post("", dependencies=[CsrfChecked])
def create(request: Request, who: WebUser, api: Api, posted: PostedForm) -> Response:
    form = WorkflowForm.from_form(posted)
    # One workflow per rendered form, however often it is sent (a double click, a reload).
    key = posted.get("idempotency_key")
    key = key if isinstance(key, str) and key else None
    try:
        created = api.workflows.create(who, form.create_request(), idempotency_key=key)
    except (InvalidFieldsError, ConflictError) as exc:
        return _form_page(
            request,
            form,
            errors=_form_errors(exc, form.kind),
            idempotency_key=key,
            status_code=_status_of(exc),
        )
    return RedirectResponse(f"{LIST}/{created.body['id']}", status_code=303)


@router.get("/schedule-preview")
def schedule_preview(
    request: Request,
    who: WebUser,
    api: Api,
    schedule: str = "interval",
    interval: str = "",
    cron: str = "",
    timezone: str = "",
    dst_gap: str = "shift",
    dst_overlap: str = "once",
) -> HTMLResponse:
    """The next runs of the schedule being typed (an htmx fragment of the form)."""
    form = WorkflowForm(
        schedule=schedule,
        interval=interval,
        cron=cron,
        timezone=timezone,
        dst_gap=dst_gap,
        dst_overlap=dst_overlap,
    )
    try:
        spec = parse_model(ScheduleSpec, form.schedule_fields())
        runs = api.schedules.preview(spec, PreviewQuery(count=NEXT_RUNS)).next
    except InvalidFieldsError as exc:
        return page(request, "workflows/_preview.html", {"runs": [], "errors": exc.errors})
    return page(request, "workflows/_preview.html", {"runs": runs, "errors": []})


@router.get("/{workflow_id}/edit")
def edit_page(request: Request, workflow_id: UUID, who: WebUser, api: Api) -> HTMLResponse:
    workflow = api.workflows.get(who, workflow_id)
    return _form_page(request, WorkflowForm.of(workflow), workflow=workflow)


@router.post("/{workflow_id}/edit", dependencies=[CsrfChecked])
def update(
    request: Request, workflow_id: UUID, who: WebUser, api: Api, posted: PostedForm
) -> Response:
    current = api.workflows.get(who, workflow_id)
    # The kind is the workflow's; the form does not send it.
    form = WorkflowForm.from_form({**posted, "kind": current.kind.value})
    try:
        api.workflows.update(who, workflow_id, form.update_request(current))
    except (InvalidFieldsError, ConflictError) as exc:
        return _form_page(
            request,
            form,
            workflow=current,
            errors=_form_errors(exc, form.kind),
            status_code=_status_of(exc),
        )
    return RedirectResponse(f"{LIST}/{workflow_id}", status_code=303)


def _form_errors(error: ChronoverseError, kind: str) -> dict[str, list[str]]:
    if isinstance(error, InvalidFieldsError):
        return errors_by_input(error.errors, kind)
    return {GENERAL: [str(error)]}


# --- the workflow page and its actions -----------------------------------------------------------


@router.get("/{workflow_id}")
def workflow_page(
    request: Request,
    workflow_id: UUID,
    who: WebUser,
    api: Api,
    status: str = "",
    trigger: str = "",
    cursor: str = "",
    fires_cursor: str = "",
) -> HTMLResponse:
    jobs_filter = _given({"status": status, "trigger": trigger, "cursor": cursor})
    return _workflow_page(request, who, api, workflow_id, jobs_filter, fires_cursor)


def _workflow_page(
    request: Request,
    who: Principal,
    api: Application,
    workflow_id: UUID,
    jobs_filter: dict[str, str],
    fires_cursor: str = "",
    *,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    workflow = api.workflows.get(who, workflow_id)  # first: NotFoundError before anything else
    jobs_errors: list[str] = []
    try:
        job_query = parse_model(JobQuery, {**jobs_filter, "limit": JOBS_PER_PAGE})
        jobs = api.jobs.list(who, workflow_id, job_query)
    except InvalidFieldsError as exc:
        jobs_errors = [f"{e.field}: {e.message}" for e in exc.errors]
        jobs = JobPageOut(jobs=[], next_cursor=None)
    fires_errors: list[str] = []
    try:
        fire_query = parse_model(
            FireQuery, {"limit": FIRES_PER_PAGE, **_given({"cursor": fires_cursor})}
        )
        fires = api.schedules.fires(who, workflow_id, fire_query)
    except InvalidFieldsError as exc:
        fires_errors = [f"{e.field}: {e.message}" for e in exc.errors]
        fires = None
    base = f"{LIST}/{workflow_id}"
    jobs_only = {k: v for k, v in jobs_filter.items() if k != "cursor"}

    def jobs_url(**changes: str | None) -> str:
        merged = {**jobs_only, **changes}
        query = urlencode([(k, v) for k, v in merged.items() if v])
        return f"{base}?{query}#jobs" if query else f"{base}#jobs"

    return page(
        request,
        "workflows/detail.html",
        {
            "workflow": workflow,
            "error": error,
            "next_runs": api.schedules.next_runs(
                who, workflow_id, PreviewQuery(count=NEXT_RUNS)
            ).next,
            "analytics": api.analytics.of_workflow(who, workflow_id, AnalyticsQuery()),
            "jobs": jobs,
            "jobs_filter": jobs_filter,
            "jobs_errors": jobs_errors,
            "jobs_url": jobs_url,
            "jobs_next_url": jobs_url(cursor=jobs.next_cursor) if jobs.next_cursor else None,
            "fires": fires,
            "fires_errors": fires_errors,
            "fires_next_url": (
                f"{jobs_url(fires_cursor=fires.next_cursor).removesuffix('#jobs')}#fires"
                if fires and fires.next_cursor
                else None
            ),
            "job_statuses": list(JobStatus),
            "job_triggers": list(JobTrigger),
            "run_key": str(uuid4()),
        },
        status_code=status_code,
    )


def _after_action(
    request: Request,
    who: Principal,
    api: Application,
    workflow_id: UUID,
    action: Any,
    *,
    then: str | None = None,
) -> Response:
    """Run ``action``; then go to ``then`` (default: the workflow page), or show the workflow
    page with why the action was refused (a terminated workflow cannot be paused...)."""
    try:
        action()
    except (ConflictError, RateLimitedError, InvalidFieldsError) as exc:
        return _workflow_page(
            request, who, api, workflow_id, {}, error=str(exc), status_code=_status_of(exc)
        )
    return RedirectResponse(then or f"{LIST}/{workflow_id}", status_code=303)


@router.post("/{workflow_id}/run", dependencies=[CsrfChecked])
def run_now(
    request: Request, workflow_id: UUID, who: WebUser, api: Api, posted: PostedForm
) -> Response:
    key = posted.get("idempotency_key")
    key = key if isinstance(key, str) and key else None
    return _after_action(
        request,
        who,
        api,
        workflow_id,
        lambda: api.jobs.run(who, workflow_id, idempotency_key=key),
        then=f"{LIST}/{workflow_id}#jobs",
    )


@router.post("/{workflow_id}/pause", dependencies=[CsrfChecked])
def pause(request: Request, workflow_id: UUID, who: WebUser, api: Api) -> Response:
    return _after_action(
        request, who, api, workflow_id, lambda: api.schedules.pause(who, workflow_id)
    )


@router.post("/{workflow_id}/resume", dependencies=[CsrfChecked])
def resume(request: Request, workflow_id: UUID, who: WebUser, api: Api) -> Response:
    return _after_action(
        request, who, api, workflow_id, lambda: api.schedules.resume(who, workflow_id)
    )


@router.post("/{workflow_id}/terminate", dependencies=[CsrfChecked])
def terminate(request: Request, workflow_id: UUID, who: WebUser, api: Api) -> Response:
    return _after_action(
        request,
        who,
        api,
        workflow_id,
        lambda: api.workflows.terminate(who, workflow_id, idempotency_key=None),
    )


@router.post("/{workflow_id}/delete", dependencies=[CsrfChecked])
def delete(request: Request, workflow_id: UUID, who: WebUser, api: Api) -> Response:
    return _after_action(
        request, who, api, workflow_id, lambda: api.workflows.delete(who, workflow_id), then=LIST
    )
