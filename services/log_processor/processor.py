"""Storing log lines and fanning them out to live viewers.

A batch of `job_logs` messages becomes one idempotent INSERT (and, for end markers, one UPDATE)
in one transaction; only after it commits are the lines published on Redis `job_logs:<job_id>`,
and only then does the consumer commit the offsets. Lines are stored and published as the attempt
that printed them. Live viewers de-duplicate by (attempt, seq) and fill any gap from Postgres, so
a lost Redis message delays nothing and duplicates no line.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
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


@dataclass(frozen=True, kw_only=True)
class Gathered:
    """A batch's lines by (job, attempt), and each job's newest end marker."""

    lines: dict[tuple[UUID, int], list[LogLine]]
    ends: dict[UUID, EndMessage]


def gather(messages: Sequence[LogMessage]) -> Gathered:
    """Group a batch's messages (pure). Of several end markers of one job, the newest attempt's
    (the last of equals) is kept: one UPDATE row per job."""
    lines: dict[tuple[UUID, int], list[LogLine]] = {}
    ends: dict[UUID, EndMessage] = {}
    for message in messages:
        if isinstance(message, LinesMessage):
            lines.setdefault((message.job_id, message.attempt), []).extend(message.lines)
        else:
            kept = ends.get(message.job_id)
            if kept is None or message.attempt >= kept.attempt:
                ends[message.job_id] = message
    return Gathered(lines=lines, ends=ends)


class LogProcessor:
    def __init__(self, pool: Pool, redis_client: redis.Redis, *, purge_grace_s: float) -> None:
        self._pool = pool
        self._redis = redis_client
        self._purge_grace_s = purge_grace_s

    def handle(self, batch: Sequence[Record[LogMessage]]) -> None:
        gathered = gather([record.value for record in batch])
        self._store(gathered)
        self._fan_out(gathered)

    def _store(self, batch: Gathered) -> None:
        rows = [(key, line) for key, key_lines in batch.lines.items() for line in key_lines]
        ends = list(batch.ends.values())
        with self._pool.connection() as conn:
            if rows:
                conn.execute(
                    QUERIES.insert_lines,
                    {
                        "job_ids": [job_id for (job_id, _), _ in rows],
                        "attempts": [attempt for (_, attempt), _ in rows],
                        "seqs": [line.seq for _, line in rows],
                        "streams": [line.stream.value for _, line in rows],
                        "ts": [line.ts for _, line in rows],
                        "lines": [line.line for _, line in rows],
                    },
                )
            if ends:
                # In the same transaction as the lines: a viewer that sees the end has every line.
                conn.execute(
                    QUERIES.close_logs,
                    {
                        "job_ids": [end.job_id for end in ends],
                        "attempts": [end.attempt for end in ends],
                        "last_seqs": [end.last_seq for end in ends],
                        "incomplete": [end.incomplete for end in ends],
                    },
                )
                # Workflows that keep no logs: the ended attempts' lines go after the grace
                # (services/log_processor/retention.py deletes them).
                conn.execute(
                    QUERIES.schedule_purge,
                    {"job_ids": [end.job_id for end in ends], "grace_s": self._purge_grace_s},
                )
        LINES_STORED.inc(len(rows))
        LOGS_CLOSED.inc(len(ends))
        for end in ends:
            if end.incomplete:
                logger.warning(
                    "job %s attempt %d ended its logs with lines lost",
                    end.job_id,
                    end.attempt,
                    extra={
                        "action": "logs_incomplete",
                        "job_id": str(end.job_id),
                        "attempt": end.attempt,
                    },
                )

    def _fan_out(self, batch: Gathered) -> None:
        try:
            pipe = self._redis.pipeline(transaction=False)
            for (job_id, attempt), job_lines in batch.lines.items():
                pipe.publish(live_channel(job_id), encode_live_lines(job_lines, attempt=attempt))
            for end in batch.ends.values():
                pipe.publish(
                    live_channel(end.job_id),
                    encode_live_end(end.last_seq, attempt=end.attempt, incomplete=end.incomplete),
                )
            pipe.execute()
        except redis.RedisError as exc:
            # Stored already: viewers read it from Postgres. Not worth redelivering the batch.
            FANOUT_FAILURES.inc()
            logger.warning(
                "could not publish log lines on Redis: %s",
                exc,
                extra={"action": "log_fanout_failed"},
            )
