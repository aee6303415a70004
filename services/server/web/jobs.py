"""The job page: its status and history, and its log viewer (live tail, search, download).

Every route reads through the application layer (the jobs and logs use cases), as the JSON API
does; the live tail is the API's own SSE stream (:func:`services.server.routes.logs.
stream_response`, same events, same ``Last-Event-ID`` resume), read with the session cookie
because EventSource cannot send an Authorization header. That stream answers 401, not a redirect
to the login page, when the session is gone: EventSource would otherwise take a page of HTML for
a broken stream. See docs/dashboard.md, Live logs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, StreamingResponse
from pydantic import ValidationError
from sse_starlette import EventSourceResponse

from chronoverse.accounts import Principal
from chronoverse.errors import AuthenticationError, InvalidFieldsError
from services.server.routes.deps import Api
from services.server.routes.logs import (
    After,
    Attempt,
    LastEventId,
    download_response,
    stream_response,
)
from services.server.schemas import (
    MAX_LOG_SEARCH,
    JobEventOut,
    JobOut,
    LogDownloadQuery,
    LogQuery,
)
from services.server.usecases import Application, JobRef
from services.server.web.render import format_time, page
from services.server.web.session import WebUser, optional_user

router = APIRouter(prefix="/ui/workflows/{workflow_id}/jobs/{job_id}", include_in_schema=False)

SEARCH_LIMIT = 200  # matching lines a search shows at a time ("More" loads the next ones)
# The live viewer keeps at most this many lines in the page (the oldest go first).
MAX_DOM_LINES = 50_000
DOWNLOAD_FORMATS = ("txt", "json", "jsonl")
# What the timeline shows of each event's data; the rest (lease tokens...) is in the API.
TIMELINE_FIELDS: dict[str, tuple[str, ...]] = {
    "created": ("trigger", "scheduled_at"),
    "published": ("publish_count",),
    "republished": ("publish_count",),
    "claimed": ("worker", "attempt", "delay_s"),
    "container_started": ("attempt", "container_id"),
    "lease_lost": ("worker", "attempt", "expired_at"),
    "lease_recovered": ("worker", "attempt"),
    "log_gap": ("attempt",),
    "retry_scheduled": ("attempt", "reason", "retry_at"),
    "finished": ("status", "attempt", "exit_code", "failure_kind", "error", "duration_s"),
    "canceled": ("by", "reason", "previous_status"),
}


@dataclass(frozen=True, kw_only=True)
class TimelineEntry:
    """One event of the job's history, as the timeline lists it."""

    type: str
    at: datetime
    details: tuple[tuple[str, str], ...]


def timeline_entry(event: JobEventOut) -> TimelineEntry:
    fields = TIMELINE_FIELDS.get(event.type)
    if fields is None:
        fields = tuple(key for key in event.data if key != "lease_token")
    details = tuple(
        (key, _detail(key, event.data[key]))
        for key in fields
        if event.data.get(key) not in (None, "")
    )
    return TimelineEntry(type=event.type, at=event.at, details=details)


def _detail(key: str, value: Any) -> str:
    if key.endswith("_at") and isinstance(value, str):
        try:
            return format_time(datetime.fromisoformat(value))
        except ValueError:
            return value
    if key == "container_id" and isinstance(value, str):
        return value[:12]
    if key.endswith("_s") and isinstance(value, int | float):
        return f"{value:.1f} s"
    return str(value)


def stream_user(request: Request, api: Api) -> Principal:
    """The signed-in user of a live stream; 401 (never a redirect) when there is none."""
    who = optional_user(request, api)
    if who is None:
        raise AuthenticationError("the session has ended; sign in again to follow this log")
    return who


StreamUser = Annotated[Principal, Depends(stream_user)]


def _summary_context(
    api: Application, who: Principal, workflow_id: UUID, job_id: UUID
) -> dict[str, Any]:
    job = api.jobs.get(who, workflow_id, job_id)
    history = api.jobs.events(who, workflow_id, job_id)
    return {
        "job": job,
        "timeline": [timeline_entry(e) for e in history.events],
        "truncated": history.truncated,
        "base": _base(workflow_id, job_id),
    }


def _base(workflow_id: UUID, job_id: UUID) -> str:
    return f"/ui/workflows/{workflow_id}/jobs/{job_id}"


@router.get("")
def job_page(
    request: Request, workflow_id: UUID, job_id: UUID, who: WebUser, api: Api
) -> HTMLResponse:
    """The job: status, attempt, exit code, error, its timeline, and the live log viewer."""
    context = _summary_context(api, who, workflow_id, job_id)
    workflow = api.workflows.get(who, workflow_id)
    job: JobOut = context["job"]
    return page(
        request,
        "jobs/job.html",
        {
            **context,
            "workflow": workflow,
            "attempts": range(1, max(job.attempt, 1) + 1),
            "formats": DOWNLOAD_FORMATS,
            "max_lines": MAX_DOM_LINES,
            "max_search": MAX_LOG_SEARCH,
        },
    )


@router.get("/summary")
def job_summary(
    request: Request, workflow_id: UUID, job_id: UUID, who: WebUser, api: Api
) -> HTMLResponse:
    """The status and timeline alone: the page reloads them when the log moves on or ends."""
    return page(request, "jobs/_summary.html", _summary_context(api, who, workflow_id, job_id))


@router.get("/logs")
def log_search(
    request: Request,
    workflow_id: UUID,
    job_id: UUID,
    who: WebUser,
    api: Api,
    q: Annotated[str | None, Query()] = None,
    stream: Annotated[str | None, Query()] = None,
    attempt: Annotated[str | None, Query()] = None,
    cursor: Annotated[str | None, Query()] = None,
) -> HTMLResponse:
    """Stored lines that contain ``q`` (and are of ``stream``), rendered: the search results.

    The form's empty fields mean "any"; a value the logs use case refuses is shown in the
    fragment rather than answered as a JSON 422, which htmx would not display.
    """
    params = {"q": q, "stream": stream, "attempt": attempt, "cursor": cursor}
    try:
        query = LogQuery.model_validate(
            {"limit": SEARCH_LIMIT} | {k: v for k, v in params.items() if v}
        )
    except ValidationError as exc:
        errors = [
            f"{'.'.join(str(p) for p in e['loc']) or 'query'}: {e['msg']}" for e in exc.errors()
        ]
        return page(request, "jobs/_search.html", {"errors": errors})
    try:
        result = api.logs.page(who, JobRef(job_id=job_id, workflow_id=workflow_id), query)
    except InvalidFieldsError as exc:  # e.g. an attempt the job has not had
        errors = [f"{e.field}: {e.message}" for e in exc.errors]
        return page(request, "jobs/_search.html", {"errors": errors})
    more = None
    if result.next_cursor is not None:
        more = {k: v for k, v in params.items() if v and k != "cursor"}
        more["cursor"] = result.next_cursor
    return page(
        request,
        "jobs/_search.html",
        {
            "result": result,
            "q": query.q,
            "stream": query.stream,
            "more": more,
            "first": cursor is None,
            "base": _base(workflow_id, job_id),
        },
    )


@router.get("/logs/download")
def log_download(
    workflow_id: UUID,
    job_id: UUID,
    who: WebUser,
    api: Api,
    query: Annotated[LogDownloadQuery, Query()],
) -> StreamingResponse:
    """The log as a file (txt, json or jsonl), streamed by the logs use case."""
    ref = JobRef(job_id=job_id, workflow_id=workflow_id)
    return download_response(api.logs.download(who, ref, query))


@router.get("/logs/stream")
def log_stream(
    workflow_id: UUID,
    job_id: UUID,
    who: StreamUser,
    api: Api,
    last_event_id: LastEventId = None,
    attempt: Attempt = None,
    after: After = None,
) -> EventSourceResponse:
    """The live tail: the JSON API's SSE stream (events ``log``, ``attempt``, ``end``)."""
    ref = JobRef(job_id=job_id, workflow_id=workflow_id)
    return stream_response(api, who, ref, last_event_id, attempt, after)
