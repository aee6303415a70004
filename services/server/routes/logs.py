"""Job logs: cursor pages, and the live SSE stream."""

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Header, Query
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool

from chronoverse.domain import LogStream
from chronoverse.errors import FieldError, InvalidFieldsError
from chronoverse.jobs import Job
from chronoverse.logs import LogLine, lines_to_json
from services.server import logs
from services.server.context import ServerContext
from services.server.http_errors import ERRORS
from services.server.routes.deps import Auth, Context
from services.server.schemas import LogLineOut, LogPageOut
from services.server.store import jobs

router = APIRouter(tags=["logs"], responses=ERRORS)
MAX_PAGE = 1000
STREAM_DOC = (
    "Server-sent events: each line is `event: log`, `id: <seq>`, `data: {seq, stream, ts, line}`. "
    "Lines stored before the connection come first (after `Last-Event-ID`, or the `after` "
    "parameter), then live lines, with no gap and no duplicate. Keep-alive comments arrive "
    "while idle. The stream ends with `event: end` once the job is over and every line was sent."
)
SSE_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {}}, "description": STREAM_DOC}
}


def _job(context: ServerContext, user_id: UUID, workflow_id: UUID | None, job_id: UUID) -> Job:
    with context.transaction() as conn:
        if workflow_id is None:
            return jobs.get_by_id(conn, user_id, job_id)
        return jobs.get(conn, user_id, workflow_id, job_id)


def _page(
    context: ServerContext,
    user_id: UUID,
    workflow_id: UUID | None,
    job_id: UUID,
    cursor: str | None,
    limit: int,
    stream: LogStream | None,
) -> LogPageOut:
    job = _job(context, user_id, workflow_id, job_id)
    after = _seq(cursor, "cursor") if cursor else -1
    with context.transaction() as conn:
        lines = logs.page(conn, job.id, after=after, limit=limit, stream=stream)
    return LogPageOut(
        logs=[LogLineOut(seq=x.seq, stream=x.stream, ts=x.ts, line=x.line) for x in lines],
        next_cursor=str(lines[-1].seq) if len(lines) == limit else None,
    )


def _seq(value: str, field: str) -> int:
    try:
        seq = int(value)
    except ValueError:
        seq = -2
    if seq < -1:
        raise InvalidFieldsError([FieldError(field, "must be a log seq (an integer >= -1)")])
    return seq


def _stream(
    context: ServerContext,
    user_id: UUID,
    workflow_id: UUID | None,
    job_id: UUID,
    last_event_id: str | None,
    after: int | None,
) -> EventSourceResponse:
    job = _job(context, user_id, workflow_id, job_id)
    start = (
        _seq(last_event_id, "Last-Event-ID")
        if last_event_id
        else (after if after is not None else -1)
    )
    # Batches: one hand-over to the event loop per page or live message, not per line.
    follower = logs.LogFollower(context.pool, context.redis, job.id, after=start).batches()

    async def events() -> AsyncIterator[bytes]:
        try:
            async for batch in iterate_in_threadpool(follower):
                chunk, ended = encode_events(batch)
                if chunk:
                    yield chunk
                if ended:
                    return
        finally:
            await run_in_threadpool(follower.close)  # unsubscribes from Redis

    return EventSourceResponse(events(), ping=context.settings.sse_keepalive_s)


def encode_events(batch: list[logs.FollowEvent]) -> tuple[bytes, bool]:
    """A batch of follower events as SSE bytes, and whether the stream ends with it.

    The events of a batch go out in one write (sse-starlette passes bytes through as they are):
    one write per line was most of the server's CPU while following a chatty job.
    """
    lines = [event for event in batch if isinstance(event, LogLine)]
    out = [
        ServerSentEvent(data=json.dumps(data), event="log", id=str(line.seq)).encode()
        for line, data in zip(lines, lines_to_json(lines), strict=True)
    ]
    end = next((event for event in batch if isinstance(event, logs.LogEnd)), None)
    if end is not None:
        out.append(
            ServerSentEvent(data=json.dumps({"last_seq": end.last_seq}), event="end").encode()
        )
    return b"".join(out), end is not None


Cursor = Annotated[
    str | None, Query(max_length=20, description="`next_cursor` of the previous page.")
]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE)]
LastEventId = Annotated[str | None, Header(alias="Last-Event-ID", max_length=20)]
After = Annotated[
    int | None, Query(ge=-1, description="Start after this seq (like Last-Event-ID).")
]


@router.get(
    "/workflows/{workflow_id}/jobs/{job_id}/logs",
    response_model=LogPageOut,
    summary="A job's log lines, oldest first, a page at a time.",
)
def job_logs(
    workflow_id: UUID,
    job_id: UUID,
    who: Auth,
    context: Context,
    cursor: Cursor = None,
    limit: Limit = 500,
    stream: LogStream | None = None,
) -> LogPageOut:
    return _page(context, who.user_id, workflow_id, job_id, cursor, limit, stream)


@router.get(
    "/workflows/{workflow_id}/jobs/{job_id}/logs/stream",
    response_class=EventSourceResponse,
    responses=SSE_RESPONSE,
    summary="Follow a job's log lines live (SSE).",
)
def job_logs_stream(
    workflow_id: UUID,
    job_id: UUID,
    who: Auth,
    context: Context,
    last_event_id: LastEventId = None,
    after: After = None,
) -> EventSourceResponse:
    return _stream(context, who.user_id, workflow_id, job_id, last_event_id, after)


@router.get(
    "/jobs/{job_id}/logs",
    response_model=LogPageOut,
    summary="The same as the workflow-scoped route, by job id alone.",
)
def logs_by_job(
    job_id: UUID,
    who: Auth,
    context: Context,
    cursor: Cursor = None,
    limit: Limit = 500,
    stream: LogStream | None = None,
) -> LogPageOut:
    return _page(context, who.user_id, None, job_id, cursor, limit, stream)


@router.get(
    "/jobs/{job_id}/logs/stream",
    response_class=EventSourceResponse,
    responses=SSE_RESPONSE,
    summary="The same as the workflow-scoped stream, by job id.",
)
def logs_stream_by_job(
    job_id: UUID,
    who: Auth,
    context: Context,
    last_event_id: LastEventId = None,
    after: After = None,
) -> EventSourceResponse:
    return _stream(context, who.user_id, None, job_id, last_event_id, after)
