"""Storing log lines and fanning them out to live viewers.

A batch of `job_logs` messages becomes one idempotent INSERT (and, for end markers, one UPDATE)
in one transaction; only after it commits are the lines published on Redis `job_logs:<job_id>`,
and only then does the consumer commit the offsets. Live viewers de-duplicate by seq and fill
any gap from Postgres, so a lost Redis message delays nothing and duplicates no line.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from uuid import UUID

import redis
from prometheus_client import Counter

from chronoverse.kafka.consumer import Record
from chronoverse.logs import (
    EndMessage,
    LinesMessage,
    LogLine,
    LogMessage,
    encode_live_end,
    encode_live_lines,
    live_channel,
)
from chronoverse.postgres import Pool
from chronoverse.sql import Queries

logger = logging.getLogger(__name__)
QUERIES = Queries.load(Path(__file__).with_name("queries.sql"))

LINES_STORED = Counter("chronoverse_log_lines_stored", "Log lines written to Postgres.")
LOGS_CLOSED = Counter("chronoverse_log_streams_closed", "Jobs whose log end marker was stored.")
FANOUT_FAILURES = Counter("chronoverse_log_fanout_failures", "Batches not published on Redis.")


class LogProcessor:
    def __init__(self, pool: Pool, redis_client: redis.Redis) -> None:
        self._pool = pool
        self._redis = redis_client

    def handle(self, batch: Sequence[Record[LogMessage]]) -> None:
        lines: dict[UUID, list[LogLine]] = {}
        ends: dict[UUID, int] = {}
        for record in batch:
            message = record.value
            if isinstance(message, LinesMessage):
                lines.setdefault(message.job_id, []).extend(message.lines)
            elif isinstance(message, EndMessage):
                ends[message.job_id] = message.last_seq
        self._store(lines, ends)
        self._fan_out(lines, ends)

    def _store(self, lines: dict[UUID, list[LogLine]], ends: dict[UUID, int]) -> None:
        rows = [(job_id, line) for job_id, job_lines in lines.items() for line in job_lines]
        with self._pool.connection() as conn:
            if rows:
                conn.execute(
                    QUERIES.insert_lines,
                    {
                        "job_ids": [job_id for job_id, _ in rows],
                        "seqs": [line.seq for _, line in rows],
                        "streams": [line.stream.value for _, line in rows],
                        "ts": [line.ts for _, line in rows],
                        "lines": [line.line for _, line in rows],
                    },
                )
            if ends:
                # In the same transaction as the lines: a viewer that sees the end has every line.
                conn.execute(
                    QUERIES.close_logs, {"job_ids": list(ends), "last_seqs": list(ends.values())}
                )
        LINES_STORED.inc(len(rows))
        LOGS_CLOSED.inc(len(ends))

    def _fan_out(self, lines: dict[UUID, list[LogLine]], ends: dict[UUID, int]) -> None:
        try:
            pipe = self._redis.pipeline(transaction=False)
            for job_id, job_lines in lines.items():
                pipe.publish(live_channel(job_id), encode_live_lines(job_lines))
            for job_id, last_seq in ends.items():
                pipe.publish(live_channel(job_id), encode_live_end(last_seq))
            pipe.execute()
        except redis.RedisError as exc:
            # Stored already: viewers read it from Postgres. Not worth redelivering the batch.
            FANOUT_FAILURES.inc()
            logger.warning(
                "could not publish log lines on Redis: %s",
                exc,
                extra={"action": "log_fanout_failed"},
            )
