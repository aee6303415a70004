"""Reading a job's logs: pages of one attempt from Postgres, and the rules a live reader follows.

Each attempt of a job numbers its lines from 0; a reader's place is a
:class:`~chronoverse.logs.LogPosition`, ``(attempt, seq)``. The live follower itself is
:mod:`services.server.follow`; what it does next is decided here by :func:`decide`, a pure
function of the job's :class:`LogState`:

- Postgres may have a gap for a moment (the log processor writes batches concurrently, so a later
  batch of a job, even its end marker, can commit before an earlier one): a reader stops at a gap
  and waits for it to fill; only a gap that lasts ``GAP_WAIT`` is skipped.
- When the job moves on to a later attempt (it was retried), the reader finishes the attempt it is
  on, says so with an :class:`AttemptStart`, and goes on with the next attempt from its first
  line: attempts are never spliced, and none is skipped.
- It ends once the job is over and the last line of its final attempt was sent, with a
  :class:`LogEnd` that says whether lines are known to be missing (lost in shipping, or an end
  marker that never came).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg

from chronoverse.domain import JobStatus, LogStream, WorkflowKind
from chronoverse.logs import LogLine
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
    """Lines of one attempt, in order.

    A tuple is a live message's lines as decoded once for every viewer of the process (shared,
    never changed), so what they encode to can be shared too (``routes.logs.encode_events``).
    """

    attempt: int
    lines: Sequence[LogLine]


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
