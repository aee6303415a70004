"""Reading a job's logs: pages from Postgres, and following them live.

:class:`LogFollower` is the one implementation behind the SSE stream, the gRPC stream and
``chronoverse logs --follow``. It subscribes to Redis `job_logs:<job_id>` first, then reads
Postgres after the client's last seq, then takes live lines, keeping only the next seq in order;
any gap (a line published before we subscribed, a lost Redis message) is read from Postgres,
where the log processor commits every line before publishing it. So there is no gap and no
duplicate. It ends once the job is over and its last line was sent.
"""

from __future__ import annotations

import json
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
import redis

from chronoverse.domain import JobStatus, LogStream, WorkflowKind
from chronoverse.logs import LogLine
from chronoverse.postgres import Pool
from chronoverse.sql import Queries

QUERIES = Queries.load(Path(__file__).with_name("queries.sql"))
PAGE = 1000
# A finished job whose end marker never arrived (its worker died while shipping) ends anyway.
MISSING_END_AFTER = timedelta(seconds=60)


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

    def __iter__(self) -> Generator[FollowEvent, None, None]:
        pubsub = self._redis.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
        pubsub.subscribe(f"job_logs:{self._job_id}")  # before reading Postgres: nothing slips by
        try:
            while True:
                yield from self._from_database()
                if self._over():
                    yield LogEnd(last_seq=self._last)
                    return
                message = pubsub.get_message(timeout=self._wait_s)
                if message is None:
                    yield Idle()
                    continue
                yield from self._from_live(message)
        finally:
            pubsub.close()

    def _from_database(self) -> Iterator[LogLine]:
        while True:
            with self._pool.connection() as conn:
                lines = page(conn, self._job_id, after=self._last, limit=PAGE)
            for line in lines:
                self._last = line.seq
                yield line
            if len(lines) < PAGE:
                return

    def _from_live(self, message: dict[str, Any]) -> Iterator[LogLine]:
        data = json.loads(message["data"])
        if data.get("type") != "lines":
            return  # an end marker: the next _over() check sees it in Postgres
        for raw in data["lines"]:
            line = LogLine.from_json(raw)
            if line.seq <= self._last:
                continue  # already sent
            if line.seq != self._last + 1:
                return  # a gap: the next read from Postgres fills it, in order
            self._last = line.seq
            yield line

    def _over(self) -> bool:
        with self._pool.connection() as conn:
            state = conn.execute(QUERIES.log_state, {"job_id": self._job_id}).fetchone()
        return state is None or is_over(state, self._last)
