"""Reading a job's logs: pages from Postgres, and following them live.

:class:`LogFollower` is the one implementation behind the SSE stream, the gRPC stream and
``chronoverse logs --follow``. It subscribes to Redis `job_logs:<job_id>` first, then reads
Postgres after the client's last seq, then takes live lines, keeping only the next seq in order;
any gap (a line published before we subscribed, a lost Redis message) is read from Postgres,
where the log processor commits every line before publishing it. Postgres itself may have a gap
for a moment: the log processor writes batches concurrently, so a later batch of a job (even its
end marker) can commit before an earlier one. Reading Postgres therefore also stops at a gap and
waits for it to fill; only a gap that lasts ``GAP_WAIT`` is skipped. So there is no gap and no
duplicate. It ends once the job is over and its last line was sent.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
import redis

from chronoverse.domain import JobStatus, LogStream, WorkflowKind
from chronoverse.logs import LinesMessage, LogLine, decode_live, live_channel
from chronoverse.postgres import Pool
from chronoverse.sql import Queries

QUERIES = Queries.load(Path(__file__).parent / "store" / "queries.sql")
PAGE = 1000
# A finished job whose end marker never arrived (its worker died while shipping) ends anyway.
MISSING_END_AFTER = timedelta(seconds=60)
# A hole in a job's stored lines is normally a batch still being written; one that outlives this
# is skipped rather than stalling the reader for ever.
GAP_WAIT_S = 10.0


@dataclass(frozen=True, kw_only=True)
class LogEnd:
    last_seq: int


@dataclass(frozen=True, kw_only=True)
class Idle:
    """Nothing new for a while (callers may send a keep-alive)."""


FollowEvent = LogLine | LogEnd | Idle


def page(
    conn: psycopg.Connection[dict[str, Any]],
    job_id: UUID,
    *,
    after: int,
    limit: int,
    stream: LogStream | None = None,
) -> list[LogLine]:
    rows = conn.execute(
        QUERIES.log_page,
        {
            "job_id": job_id,
            "after": after,
            "limit": limit,
            "stream": stream.value if stream else None,
        },
    ).fetchall()
    return [
        LogLine(seq=r["seq"], stream=LogStream(r["stream"]), ts=r["ts"], line=r["line"])
        for r in rows
    ]


def is_over(state: dict[str, Any], last_sent: int) -> bool:
    """Whether a follower that sent every line up to ``last_sent`` is done (pure)."""
    if not JobStatus(state["status"]).is_final:
        return False
    if state["logs_closed_at"] is not None:
        return bool(last_sent >= state["logs_last_seq"])
    if WorkflowKind(state["kind"]) is WorkflowKind.HEARTBEAT or state["attempt"] == 0:
        return True  # no output is coming: a heartbeat, or a job that never ran
    finished_for = state["finished_for"]
    return bool(finished_for is not None and finished_for > MISSING_END_AFTER)


class LogFollower:
    def __init__(
        self,
        pool: Pool,
        redis_client: redis.Redis,
        job_id: UUID,
        *,
        after: int = -1,
        wait_s: float = 1.0,
    ) -> None:
        self._pool = pool
        self._redis = redis_client
        self._job_id = job_id
        self._last = after
        self._wait_s = wait_s
        self._gap_since: float | None = None

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
                if self._over():
                    yield [LogEnd(last_seq=self._last)]
                    return
                message = pubsub.get_message(timeout=self._wait_s)
                if message is None:
                    yield [Idle()]
                    continue
                live: list[FollowEvent] = list(self._from_live(message))
                if live:
                    yield live
        finally:
            pubsub.close()

    def _from_database(self) -> Iterator[list[FollowEvent]]:
        while True:
            with self._pool.connection() as conn:
                lines = page(conn, self._job_id, after=self._last, limit=PAGE)
            taken: list[FollowEvent] = []
            for line in lines:
                if line.seq != self._last + 1 and not self._gap_outlived():
                    break  # wait for the missing lines: live, or on the next read
                self._advance(line)
                taken.append(line)
            if taken:
                yield taken
            if len(taken) < PAGE:
                return

    def _gap_outlived(self) -> bool:
        """Whether the gap after the last line sent has lasted long enough to be skipped."""
        now = time.monotonic()
        if self._gap_since is None:
            self._gap_since = now
        return now - self._gap_since >= GAP_WAIT_S

    def _from_live(self, message: dict[str, Any]) -> Iterator[LogLine]:
        live = decode_live(self._job_id, message["data"])
        if not isinstance(live, LinesMessage):
            return  # an end marker: the next _over() check sees it in Postgres
        for line in live.lines:
            if line.seq <= self._last:
                continue  # already sent
            if line.seq != self._last + 1:
                return  # a gap: the next read from Postgres fills it, in order
            self._advance(line)
            yield line

    def _advance(self, line: LogLine) -> None:
        self._last = line.seq
        self._gap_since = None

    def _over(self) -> bool:
        with self._pool.connection() as conn:
            state = conn.execute(QUERIES.log_state, {"job_id": self._job_id}).fetchone()
        return state is None or is_over(state, self._last)
