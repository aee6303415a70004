"""Reading a job's logs: pages of one attempt from Postgres, and following them live.

Each attempt of a job numbers its lines from 0; a reader's place is a
:class:`~chronoverse.logs.LogPosition`, ``(attempt, seq)``.

:class:`LogFollower` is the one implementation behind the SSE stream, the gRPC stream and
``chronoverse logs --follow``. It subscribes to Redis `job_logs:<job_id>` first, then reads
Postgres after the client's position, then takes live lines of its attempt, keeping only the next
seq in order; any gap (a line published before we subscribed, a lost Redis message) is read from
Postgres, where the log processor commits every line before publishing it. Postgres itself may
have a gap for a moment: the log processor writes batches concurrently, so a later batch of a job
(even its end marker) can commit before an earlier one. Reading Postgres therefore also stops at
a gap and waits for it to fill; only a gap that lasts ``GAP_WAIT`` is skipped. So there is no gap
and no duplicate.

When the job moves on to a later attempt (it was retried), the follower finishes the attempt it
is on, says so with an :class:`AttemptStart`, and goes on with the next attempt from its first
line: attempts are never spliced, and none is skipped. It ends once the job is over and the last
line of its final attempt was sent, with a :class:`LogEnd` that says whether lines are known to be
missing (lines lost in shipping, or an end marker that never came). What to do next is decided by
:func:`decide`, a pure function of the job's :class:`LogState`.
"""

from __future__ import annotations

import contextlib
import enum
import time
from collections.abc import Generator, Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
import redis

from chronoverse.domain import JobStatus, LogStream, WorkflowKind
from chronoverse.logs import LinesMessage, LogLine, LogPosition, decode_live, live_channel
from chronoverse.postgres import Pool
from chronoverse.sql import Queries
from services.server.store.workflows import like_pattern

QUERIES = Queries.load(Path(__file__).parent / "store" / "queries.sql")
PAGE = 1000
# A finished job whose end marker never arrived (its worker died while shipping) ends anyway, and
# its log is incomplete.
MISSING_END_AFTER = timedelta(seconds=60)
# A hole in a job's stored lines is normally a batch still being written; one that outlives this
# is skipped rather than stalling the reader for ever. It is also how long an attempt whose job
# was retried may still receive lines, and how long the end of a log already known to be
# incomplete is waited for.
GAP_WAIT_S = 10.0
GAP_WAIT = timedelta(seconds=GAP_WAIT_S)


@dataclass(frozen=True, kw_only=True)
class Lines:
    """Lines of one attempt, in order."""

    attempt: int
    lines: list[LogLine]


@dataclass(frozen=True, kw_only=True)
class AttemptStart:
    """The job was retried: the lines that follow are this attempt's, from its first line."""

    attempt: int


@dataclass(frozen=True, kw_only=True)
class LogEnd:
    """The job is over and every stored line of its final attempt was sent (-1: none).

    ``incomplete``: lines of that attempt are known to be missing (lost in shipping, or its end
    marker never arrived).
    """

    attempt: int
    last_seq: int
    incomplete: bool = False


@dataclass(frozen=True, kw_only=True)
class Idle:
    """Nothing new for a while (callers may send a keep-alive)."""


FollowEvent = Lines | AttemptStart | LogEnd | Idle


def page(
    conn: psycopg.Connection[dict[str, Any]],
    job_id: UUID,
    *,
    attempt: int,
    after: int,
    limit: int,
    stream: LogStream | None = None,
    contains: str | None = None,
) -> list[LogLine]:
    """One attempt's lines after seq ``after``, oldest first; only ``stream``'s, and only those
    containing ``contains`` (case-insensitive, wildcards taken literally), when given."""
    params: dict[str, Any] = {
        "job_id": job_id,
        "attempt": attempt,
        "after": after,
        "limit": limit,
        "stream": stream.value if stream else None,
    }
    query = QUERIES.log_page
    if contains is not None:
        query = QUERIES.log_search
        params["pattern"] = like_pattern(contains)
    rows = conn.execute(query, params).fetchall()
    return [
        LogLine(seq=r["seq"], stream=LogStream(r["stream"]), ts=r["ts"], line=r["line"])
        for r in rows
    ]


@dataclass(frozen=True, kw_only=True)
class LogState:
    """What a reader of a job's logs decides on (the `log_state` query)."""

    status: JobStatus
    kind: WorkflowKind
    attempt: int  # the job's current attempt; 0: it never ran
    ended_attempt: int | None  # the attempt whose end marker is stored, if any
    last_seq: int | None  # that end marker's last seq
    incomplete: bool  # lines of the job's final attempt were lost, or its end never came
    newest_lines: int | None  # the newest attempt with a stored line
    finished_for: timedelta | None
    started_for: timedelta | None  # since the current attempt started
    # The attempts up to this one had their lines deleted (the workflow keeps no logs).
    purged_attempt: int | None = None

    @property
    def latest(self) -> int:
        """The attempt a reader shows by default: the current one (1 before any)."""
        return max(self.attempt, 1)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> LogState:
        closed = row["logs_closed_at"] is not None
        return cls(
            status=JobStatus(row["status"]),
            kind=WorkflowKind(row["kind"]),
            attempt=row["attempt"],
            # Rows closed before attempts were recorded describe attempt 1.
            ended_attempt=(row["logs_attempt"] or 1) if closed else None,
            last_seq=row["logs_last_seq"] if closed else None,
            incomplete=row["logs_incomplete"],
            newest_lines=row["logs_max_attempt"],
            finished_for=row["finished_for"],
            started_for=row["started_for"],
            purged_attempt=row.get("logs_purged_attempt"),
        )


class Step(enum.Enum):
    FOLLOW = "follow"  # wait for more lines (or for the job to move on)
    NEXT_ATTEMPT = "next_attempt"  # this attempt is over; the job has a later one
    END = "end"
    END_INCOMPLETE = "end_incomplete"  # over, with lines known to be missing


def decide(
    state: LogState,
    *,
    attempt: int,
    last_sent: int,
    blocked: bool = False,
    stalled: bool = False,
    missing_end_after: timedelta = MISSING_END_AFTER,
) -> Step:
    """What a reader that sent every line of ``attempt`` up to ``last_sent`` does next (pure).

    ``blocked``: a stored line of this attempt waits behind a gap. ``stalled``: nothing new came
    for ``GAP_WAIT`` although this attempt's end marker names a later line (those lines are lost).
    """
    final = state.status.is_final
    if state.kind is WorkflowKind.HEARTBEAT:
        return Step.END if final else Step.FOLLOW  # no output, and no attempts to show
    if state.purged_attempt is not None and attempt <= state.purged_attempt:
        # Not retained: this attempt's lines were deleted on purpose, none will come.
        return Step.NEXT_ATTEMPT if attempt < state.latest else Step.END
    ended_here = state.ended_attempt == attempt
    lines_lost = False
    if ended_here and state.last_seq is not None and last_sent < state.last_seq:
        if not stalled:
            return Step.FOLLOW  # the rest is on its way
        lines_lost = True
    if attempt < state.latest:
        if blocked:
            return Step.FOLLOW
        # This attempt's lines were all sent before the next attempt began: it is over once its
        # end is stored, a later attempt's end or line is stored, or the later one has run a
        # while (this one's worker died without its end marker).
        moved_on = (
            ended_here
            or (state.ended_attempt or 0) > attempt
            or (state.newest_lines or 0) > attempt
            or state.latest > attempt + 1
            or (state.started_for is not None and state.started_for > GAP_WAIT)
        )
        return Step.NEXT_ATTEMPT if moved_on else Step.FOLLOW
    if not final:
        return Step.FOLLOW
    if state.attempt == 0 or attempt > state.latest:
        return Step.END  # it never ran: no output is coming
    if ended_here:
        return Step.END_INCOMPLETE if lines_lost or state.incomplete else Step.END
    if blocked:
        return Step.FOLLOW
    # A finished job without its end marker: a worker died while shipping. Known incomplete
    # already (a lease that expired): wait only for lines still being stored.
    patience = GAP_WAIT if state.incomplete else missing_end_after
    if state.finished_for is not None and state.finished_for > patience:
        return Step.END_INCOMPLETE
    return Step.FOLLOW


def known_incomplete(state: LogState, attempt: int) -> bool:
    """Whether lines of ``attempt`` are known to be missing (the final attempt of a job that is
    over: lost in shipping, or an end marker that never came). Earlier attempts: not known."""
    if attempt != state.latest or not state.status.is_final or state.attempt == 0:
        return False
    if state.kind is WorkflowKind.HEARTBEAT:
        return False
    if state.incomplete:
        return True
    ended = state.ended_attempt == attempt
    return not ended and state.finished_for is not None and state.finished_for > MISSING_END_AFTER


def read_state(conn: psycopg.Connection[dict[str, Any]], job_id: UUID) -> LogState | None:
    row = conn.execute(QUERIES.log_state, {"job_id": job_id}).fetchone()
    return None if row is None else LogState.from_row(row)


class LogFollower:
    def __init__(
        self,
        pool: Pool,
        redis_client: redis.Redis,
        job_id: UUID,
        *,
        start: LogPosition,
        wait_s: float = 1.0,
    ) -> None:
        self._pool = pool
        self._redis = redis_client
        self._job_id = job_id
        self._attempt = start.attempt
        self._last = start.seq
        self._wait_s = wait_s
        self._gap_since: float | None = None
        self._blocked = False  # the last read stopped at a gap

    def __iter__(self) -> Generator[FollowEvent, None, None]:
        with contextlib.closing(self.batches()) as batches:
            for batch in batches:
                yield from batch

    def batches(self) -> Generator[list[FollowEvent], None, None]:
        """The same events, as they become available together: a page read from Postgres, the
        lines of one live message. A reader on another thread (the SSE route) then pays one
        hand-over per batch rather than per line."""
        pubsub = self._redis.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
        pubsub.subscribe(live_channel(self._job_id))  # before reading Postgres: nothing slips by
        try:
            while True:
                yield from self._from_database()
                step = self._step()
                if step is Step.NEXT_ATTEMPT:
                    self._attempt += 1
                    self._last = -1
                    self._gap_since = None
                    yield [AttemptStart(attempt=self._attempt)]
                    continue
                if step is not Step.FOLLOW:
                    incomplete = step is Step.END_INCOMPLETE
                    end = LogEnd(attempt=self._attempt, last_seq=self._last, incomplete=incomplete)
                    yield [end]
                    return
                message = pubsub.get_message(timeout=self._wait_s)
                if message is None:
                    yield [Idle()]
                    continue
                live = self._from_live(message)
                if live:
                    yield [Lines(attempt=self._attempt, lines=live)]
        finally:
            pubsub.close()

    def _from_database(self) -> Iterator[list[FollowEvent]]:
        while True:
            with self._pool.connection() as conn:
                lines = page(
                    conn, self._job_id, attempt=self._attempt, after=self._last, limit=PAGE
                )
            taken: list[LogLine] = []
            self._blocked = False
            for line in lines:
                if line.seq != self._last + 1 and not self._gap_outlived():
                    self._blocked = True
                    break  # wait for the missing lines: live, or on the next read
                self._advance(line)
                taken.append(line)
            if taken:
                yield [Lines(attempt=self._attempt, lines=taken)]
            if len(taken) < PAGE:
                return

    def _gap_outlived(self) -> bool:
        """Whether the gap after the last line sent has lasted long enough to be skipped."""
        now = time.monotonic()
        if self._gap_since is None:
            self._gap_since = now
        return now - self._gap_since >= GAP_WAIT_S

    def _from_live(self, message: dict[str, Any]) -> list[LogLine]:
        live = decode_live(self._job_id, message["data"])
        if not isinstance(live, LinesMessage) or live.attempt != self._attempt:
            # An end marker: the next step sees it in Postgres. Another attempt's lines: read
            # from Postgres once this attempt is over.
            return []
        taken: list[LogLine] = []
        for line in live.lines:
            if line.seq <= self._last:
                continue  # already sent
            if line.seq != self._last + 1:
                break  # a gap: the next read from Postgres fills it, in order
            self._advance(line)
            taken.append(line)
        return taken

    def _advance(self, line: LogLine) -> None:
        self._last = line.seq
        self._gap_since = None

    def _step(self) -> Step:
        with self._pool.connection() as conn:
            state = read_state(conn, self._job_id)
        if state is None:
            return Step.END  # the job was deleted, and its logs with it
        tail_missing = (
            state.ended_attempt == self._attempt
            and state.last_seq is not None
            and self._last < state.last_seq
            and not self._blocked
        )
        return decide(
            state,
            attempt=self._attempt,
            last_sent=self._last,
            blocked=self._blocked,
            # Only while the end names lines not yet stored: the timer is the gap timer.
            stalled=tail_missing and self._gap_outlived(),
        )
