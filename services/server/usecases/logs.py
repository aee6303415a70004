"""Log use cases: a job's stored lines a page at a time, and a follower for its live lines."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from chronoverse.accounts import Principal
from chronoverse.errors import FieldError, InvalidFieldsError
from chronoverse.jobs import Job
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
        after = parse_seq(query.cursor, "cursor") if query.cursor else -1
        with self._context.transaction() as conn:
            lines = logs.page(conn, job.id, after=after, limit=query.limit, stream=query.stream)
        return LogPageOut(
            logs=[LogLineOut(seq=x.seq, stream=x.stream, ts=x.ts, line=x.line) for x in lines],
            next_cursor=str(lines[-1].seq) if len(lines) == query.limit else None,
        )

    def follow(
        self,
        who: Principal,
        ref: JobRef,
        *,
        last_event_id: str | None = None,
        after: int | None = None,
        after_field: str = "after",
    ) -> logs.LogFollower:
        """A follower (not started) from after ``last_event_id``, else ``after``, else the start.

        Ownership and the start are checked now, so an edge can answer an error before it
        begins to stream.
        """
        if after is not None and after < -1:
            raise InvalidFieldsError([FieldError(after_field, "must be -1 or more")])
        job = self._job(who, ref)
        start = parse_seq(last_event_id, "Last-Event-ID") if last_event_id else after
        context = self._context
        return logs.LogFollower(
            context.pool, context.redis, job.id, after=start if start is not None else -1
        )

    def _job(self, who: Principal, ref: JobRef) -> Job:
        with self._context.transaction() as conn:
            if ref.workflow_id is None:
                return jobs.get_by_id(conn, who.user_id, ref.job_id)
            return jobs.get(conn, who.user_id, ref.workflow_id, ref.job_id)


def parse_seq(value: str, field: str) -> int:
    """A log seq given as text (a cursor, a Last-Event-ID): an integer of -1 or more."""
    try:
        seq = int(value)
    except ValueError:
        seq = -2
    if seq < -1:
        raise InvalidFieldsError([FieldError(field, "must be a log seq (an integer >= -1)")])
    return seq
