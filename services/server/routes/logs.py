"""Job logs: cursor pages (searched and filtered), downloads, and the live SSE stream."""

import json
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from json.encoder import encode_basestring_ascii
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Header, Query
from fastapi.responses import StreamingResponse
from sse_starlette import EventSourceResponse, ServerSentEvent

from chronoverse.accounts import Principal
from chronoverse.logs import LogLine, LogPosition
from services.server import logs
from services.server.http_errors import ERRORS
from services.server.log_download import Download
from services.server.routes.deps import Api, Auth
from services.server.schemas import MAX_ATTEMPT, ErrorOut, LogDownloadQuery, LogPageOut, LogQuery
from services.server.usecases import Application, JobRef

router = APIRouter(tags=["logs"], responses=ERRORS)
# What json.dumps writes for a str (ensure_ascii): its C escaper.
_json_string = encode_basestring_ascii
STREAM_DOC = (
    "Server-sent events, from the job's latest attempt (or `attempt`): each line is `event: log`, "
    "`id: <attempt>.<seq>`, `data: {attempt, seq, stream, ts, line}`. Lines stored before the "
    "connection come first (after `Last-Event-ID`, or the `after` parameter), then live lines, "
    "with no gap and no duplicate. When the job is retried, `event: attempt` "
    "(`id: <attempt>.-1`, `data: {attempt}`) says so and the new attempt's lines follow from its "
    "first. Keep-alive comments arrive while idle. The stream ends with `event: end` "
    "(`data: {attempt, last_seq, incomplete}`) once the job is over and every line was sent; "
    "`incomplete: true` means lines of the final attempt are known to be missing."
)
SSE_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {}}, "description": STREAM_DOC},
    429: {
        "model": ErrorOut,
        "description": (
            "The user has CHRONOVERSE_MAX_STREAMS_PER_USER live streams open already "
            "(`rate_limited`, with Retry-After)."
        ),
    },
}
DOWNLOAD_DOC = (
    "The attempt's stored lines (filtered by `stream` and `q` as a page is), streamed as they are "
    'read, with `Content-Disposition: attachment; filename="job-<id>-attempt-<n>[-<stream>]'
    '.<format>"`.'
)
DOWNLOAD_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {
            "text/plain": {"schema": {"type": "string"}},
            "application/x-ndjson": {"schema": {"type": "string"}},
            "application/json": {"schema": {"type": "object"}},
        },
        "description": DOWNLOAD_DOC,
    }
}


def download_response(download: Download) -> StreamingResponse:
    """A log download as a streamed attachment (the JSON API's and the dashboard's)."""
    return StreamingResponse(
        download.chunks,
        media_type=download.media_type,
        headers={"Content-Disposition": download.content_disposition},
    )


def stream_response(
    api: Application,
    who: Principal,
    ref: JobRef,
    last_event_id: str | None,
    attempt: int | None,
    after: int | None,
) -> EventSourceResponse:
    """A job's log as server-sent events (the JSON API's stream and the dashboard's)."""
    follower = api.logs.follow(who, ref, last_event_id=last_event_id, attempt=attempt, after=after)
    # Batches: one write per page or live message, not per line. No thread waits for them.
    batches = follower.abatches()

    async def events() -> AsyncIterator[bytes]:
        try:
            async for batch in batches:
                chunk, ended = encode_events(batch)
                if chunk:
                    yield chunk
                if ended:
                    return
        finally:
            await batches.aclose()  # leaves the job's live channel, frees the stream's slot

    return EventSourceResponse(events(), ping=api.context.settings.sse_keepalive_s)


def encode_lines(attempt: int, lines: Sequence[LogLine]) -> bytes:
    """Log lines as SSE `log` events, in one chunk.

    Byte for byte what ``ServerSentEvent(data=json.dumps({"attempt": attempt, **line.to_json()}),
    event="log", id=<attempt>.<seq>).encode()`` gives for each line, formatted directly: that was
    4 µs a line, most of the server's CPU behind a burst. The data holds no line break (JSON
    escapes them) and only the text of the line needs escaping (json.dumps's own escaper).
    """
    out: list[str] = []
    last_ts, stamp = None, ""
    for line in lines:
        if line.ts is not last_ts:  # the lines of one message share their timestamp objects
            last_ts, stamp = line.ts, line.ts.isoformat()
        out.append(
            f"id: {attempt}.{line.seq}\r\nevent: log\r\n"
            f'data: {{"attempt": {attempt}, "seq": {line.seq}, "stream": "{line.stream.value}", '
            f'"ts": "{stamp}", "line": {_json_string(line.line)}}}\r\n\r\n'
        )
    return "".join(out).encode()


class SharedEncodings:
    """What a live message's lines encode to, computed once for all of a process's viewers.

    Keyed by the identity of the lines tuple the follower shares (one per live message per
    process; see ``services.server.follow``); the tuple is held with its bytes, so its id cannot
    be reused while the entry lives. Used from the event loop's thread only.
    """

    def __init__(self, size: int = 256) -> None:
        self._size = size
        self._entries: OrderedDict[int, tuple[tuple[LogLine, ...], int, bytes]] = OrderedDict()

    def encoded(self, attempt: int, lines: tuple[LogLine, ...]) -> bytes:
        entry = self._entries.get(id(lines))
        if entry is not None and entry[0] is lines and entry[1] == attempt:
            self._entries.move_to_end(id(lines))
            return entry[2]
        chunk = encode_lines(attempt, lines)
        self._entries[id(lines)] = (lines, attempt, chunk)
        if len(self._entries) > self._size:
            self._entries.popitem(last=False)
        return chunk


_SHARED = SharedEncodings()


def encode_events(batch: list[logs.FollowEvent]) -> tuple[bytes, bool]:
    """A batch of follower events as SSE bytes, and whether the stream ends with it.

    The events of a batch go out in one write (sse-starlette passes bytes through as they are):
    one write per line was most of the server's CPU while following a chatty job.
    """
    out: list[bytes] = []
    for event in batch:
        match event:
            case logs.Lines(attempt=attempt, lines=lines):
                out.append(
                    _SHARED.encoded(attempt, lines)
                    if isinstance(lines, tuple)
                    else encode_lines(attempt, lines)
                )
            case logs.AttemptStart(attempt=attempt):
                out.append(
                    ServerSentEvent(
                        data=json.dumps({"attempt": attempt}),
                        event="attempt",
                        id=LogPosition(attempt=attempt, seq=-1).id,
                    ).encode()
                )
            case logs.LogEnd():
                data = {
                    "attempt": event.attempt,
                    "last_seq": event.last_seq,
                    "incomplete": event.incomplete,
                }
                out.append(ServerSentEvent(data=json.dumps(data), event="end").encode())
                return b"".join(out), True
    return b"".join(out), False


LastEventId = Annotated[str | None, Header(alias="Last-Event-ID", max_length=30)]
Attempt = Annotated[
    int | None,
    Query(
        ge=1,
        le=MAX_ATTEMPT,
        description="Start with this attempt (default: the latest); later ones follow.",
    ),
]
After = Annotated[
    int | None,
    Query(ge=-1, description="Start after this seq of that attempt (like Last-Event-ID)."),
]


@router.get(
    "/workflows/{workflow_id}/jobs/{job_id}/logs",
    response_model=LogPageOut,
    summary="A job's log lines, oldest first, a page at a time.",
)
def job_logs(
    workflow_id: UUID, job_id: UUID, who: Auth, api: Api, query: Annotated[LogQuery, Query()]
) -> LogPageOut:
    return api.logs.page(who, JobRef(job_id=job_id, workflow_id=workflow_id), query)


@router.get(
    "/workflows/{workflow_id}/jobs/{job_id}/logs/download",
    response_class=StreamingResponse,
    responses=DOWNLOAD_RESPONSE,
    summary="Download a job's log as txt, json or jsonl.",
)
def job_logs_download(
    workflow_id: UUID,
    job_id: UUID,
    who: Auth,
    api: Api,
    query: Annotated[LogDownloadQuery, Query()],
) -> StreamingResponse:
    ref = JobRef(job_id=job_id, workflow_id=workflow_id)
    return download_response(api.logs.download(who, ref, query))


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
    api: Api,
    last_event_id: LastEventId = None,
    attempt: Attempt = None,
    after: After = None,
) -> EventSourceResponse:
    ref = JobRef(job_id=job_id, workflow_id=workflow_id)
    return stream_response(api, who, ref, last_event_id, attempt, after)


@router.get(
    "/jobs/{job_id}/logs",
    response_model=LogPageOut,
    summary="The same as the workflow-scoped route, by job id alone.",
)
def logs_by_job(
    job_id: UUID, who: Auth, api: Api, query: Annotated[LogQuery, Query()]
) -> LogPageOut:
    return api.logs.page(who, JobRef(job_id=job_id), query)


@router.get(
    "/jobs/{job_id}/logs/download",
    response_class=StreamingResponse,
    responses=DOWNLOAD_RESPONSE,
    summary="The same as the workflow-scoped download, by job id.",
)
def logs_download_by_job(
    job_id: UUID, who: Auth, api: Api, query: Annotated[LogDownloadQuery, Query()]
) -> StreamingResponse:
    return download_response(api.logs.download(who, JobRef(job_id=job_id), query))


@router.get(
    "/jobs/{job_id}/logs/stream",
    response_class=EventSourceResponse,
    responses=SSE_RESPONSE,
    summary="The same as the workflow-scoped stream, by job id.",
)
def logs_stream_by_job(
    job_id: UUID,
    who: Auth,
    api: Api,
    last_event_id: LastEventId = None,
    attempt: Attempt = None,
    after: After = None,
) -> EventSourceResponse:
    return stream_response(api, who, JobRef(job_id=job_id), last_event_id, attempt, after)
