"""Log use cases: one attempt's stored lines a page at a time, and a follower for live lines.

By default both read the job's latest attempt; ``attempt`` names an earlier one. A position
(a cursor, a Last-Event-ID) is ``<attempt>.<seq>``; a plain seq, as readers sent before lines had
attempts, is a seq of the attempt asked for, else of the latest one.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from chronoverse.accounts import Principal
from chronoverse.errors import FieldError, InvalidFieldsError
from chronoverse.jobs import Job
from chronoverse.logs import LogPosition, parse_position
from services.server import logs
from services.server.context import ServerContext
from services.server.schemas import LogLineOut, LogPageOut, LogQuery
from services.server.store import jobs


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
                conn, job.id, attempt=attempt, after=after, limit=query.limit, stream=query.stream
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

    def follow(
        self,
        who: Principal,
        ref: JobRef,
        *,
        last_event_id: str | None = None,
        attempt: int | None = None,
        after: int | None = None,
        after_field: str = "after",
    ) -> logs.LogFollower:
        """A follower (not started) from after ``last_event_id``, else after seq ``after`` of
        ``attempt`` (default: the latest attempt, from its first line).

        Ownership and the start are checked now, so an edge can answer an error before it
        begins to stream.
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
        return logs.LogFollower(context.pool, context.redis, job.id, start=start)

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
