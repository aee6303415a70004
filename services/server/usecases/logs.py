"""Log use cases: one attempt's stored lines a page at a time (optionally only one stream's and
only those containing a text), as a downloaded file, and a follower for live lines.

By default both read the job's latest attempt; ``attempt`` names an earlier one. A position
(a cursor, a Last-Event-ID) is ``<attempt>.<seq>``; a plain seq, as readers sent before lines had
attempts, is a seq of the attempt asked for, else of the latest one.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from uuid import UUID

from chronoverse.accounts import Principal
from chronoverse.domain import LogStream
from chronoverse.errors import FieldError, InvalidFieldsError
from chronoverse.jobs import Job
from chronoverse.logs import LogLine, LogPosition, parse_position
from services.server import log_download, logs
from services.server.context import ServerContext
from services.server.follow import LogFollower
from services.server.log_download import Download, LogFormat
from services.server.schemas import LogDownloadQuery, LogLineOut, LogPageOut, LogQuery
from services.server.store import jobs

DOWNLOAD_BATCH = 5000  # lines read (and held) at a time while a log downloads


@dataclass(frozen=True, kw_only=True)
class JobRef:
    """A job named by id, within its workflow or (``workflow_id`` None) by id alone."""

    job_id: UUID
    workflow_id: UUID | None = None


class LogCases:
    def __init__(self, context: ServerContext) -> None:
        self._context = context

    def page(self, who: Principal, ref: JobRef, query: LogQuery) -> LogPageOut:
        job = self._job(who, ref)
        attempt = checked_attempt(job, query.attempt, "attempt")
        after = -1
        if query.cursor:
            start = resolve(query.cursor, "cursor", default_attempt=attempt or latest(job))
            if attempt is not None and start.attempt != attempt:
                raise InvalidFieldsError(
                    [FieldError("cursor", f"is a cursor of attempt {start.attempt}")]
                )
            attempt, after = start.attempt, start.seq
        attempt = attempt or latest(job)
        with self._context.transaction() as conn:
            lines = logs.page(
                conn,
                job.id,
                attempt=attempt,
                after=after,
                limit=query.limit,
                stream=query.stream,
                contains=query.q,
            )
            state = logs.read_state(conn, job.id)
        more = len(lines) == query.limit
        return LogPageOut(
            attempt=attempt,
            logs=[
                LogLineOut(attempt=attempt, seq=x.seq, stream=x.stream, ts=x.ts, line=x.line)
                for x in lines
            ],
            next_cursor=LogPosition(attempt=attempt, seq=lines[-1].seq).id if more else None,
            incomplete=state is not None and logs.known_incomplete(state, attempt),
        )

    def download(self, who: Principal, ref: JobRef, query: LogDownloadQuery) -> Download:
        """One attempt's lines (default: the latest), filtered like a page, as a file read in
        keyset batches: ownership and the attempt are checked now, before any byte is sent."""
        job = self._job(who, ref)
        attempt = checked_attempt(job, query.attempt, "attempt") or latest(job)
        fmt = LogFormat(query.format)
        batches = self._batches(job.id, attempt, query.stream, query.q)
        return Download(
            filename=log_download.filename(job.id, attempt, fmt, query.stream),
            media_type=log_download.MEDIA_TYPES[fmt],
            chunks=log_download.encode(
                fmt,
                batches,
                job_id=job.id,
                attempt=attempt,
                incomplete=lambda: self._incomplete(job.id, attempt),
            ),
        )

    def _batches(
        self, job_id: UUID, attempt: int, stream: LogStream | None, contains: str | None
    ) -> Iterator[list[LogLine]]:
        # A short transaction per batch: a slow client holds no connection and no snapshot.
        after = -1
        while True:
            with self._context.transaction() as conn:
                lines = logs.page(
                    conn,
                    job_id,
                    attempt=attempt,
                    after=after,
                    limit=DOWNLOAD_BATCH,
                    stream=stream,
                    contains=contains,
                )
            if lines:
                yield lines
            if len(lines) < DOWNLOAD_BATCH:
                return
            after = lines[-1].seq

    def _incomplete(self, job_id: UUID, attempt: int) -> bool:
        with self._context.transaction() as conn:
            state = logs.read_state(conn, job_id)
        return state is not None and logs.known_incomplete(state, attempt)

    def follow(
        self,
        who: Principal,
        ref: JobRef,
        *,
        last_event_id: str | None = None,
        attempt: int | None = None,
        after: int | None = None,
        after_field: str = "after",
    ) -> LogFollower:
        """A follower (not started) from after ``last_event_id``, else after seq ``after`` of
        ``attempt`` (default: the latest attempt, from its first line).

        Ownership, the start and the user's cap on open streams are checked now, so an edge
        can answer an error before it begins to stream. The stream's slot is given back when
        the follower's stream ends (or, if it never starts, expires).
        """
        if after is not None and after < -1:
            raise InvalidFieldsError([FieldError(after_field, "must be -1 or more")])
        job = self._job(who, ref)
        attempt = checked_attempt(job, attempt, "attempt")
        default_attempt = attempt or latest(job)
        if last_event_id:
            start = resolve(last_event_id, "Last-Event-ID", default_attempt=default_attempt)
        else:
            start = LogPosition(attempt=default_attempt, seq=after if after is not None else -1)
        context = self._context
        slot = context.stream_slots.acquire(who.user_id)
        return LogFollower(
            context.pool,
            context.live,
            context.log_states,
            job.id,
            start=start,
            executor=context.log_reads,
            slot=slot,
        )

    def _job(self, who: Principal, ref: JobRef) -> Job:
        with self._context.transaction() as conn:
            if ref.workflow_id is None:
                return jobs.get_by_id(conn, who.user_id, ref.job_id)
            return jobs.get(conn, who.user_id, ref.workflow_id, ref.job_id)


def latest(job: Job) -> int:
    """The attempt readers show by default: the job's current one (1 before it ever ran)."""
    return max(job.attempt, 1)


def checked_attempt(job: Job, attempt: int | None, field: str) -> int | None:
    """An attempt asked for: one the job has had (attempt 1 always exists)."""
    if attempt is not None and not 1 <= attempt <= latest(job):
        raise InvalidFieldsError([FieldError(field, f"must be 1 to {latest(job)} for this job")])
    return attempt


def resolve(value: str, field: str, *, default_attempt: int) -> LogPosition:
    """A position given as text: ``<attempt>.<seq>``, or a plain seq of ``default_attempt``."""
    parsed = parse_position(value)
    if parsed is None:
        raise InvalidFieldsError(
            [FieldError(field, "must be a log position (<attempt>.<seq>) or a seq (>= -1)")]
        )
    attempt, seq = parsed
    return LogPosition(attempt=attempt or default_attempt, seq=seq)
