"""Storing log lines and fanning them out to live viewers.

A batch of `job_logs` messages is written in one transaction: its lines with one COPY (and, for
end markers, one UPDATE); only after it commits are the lines published on Redis
`job_logs:<job_id>`, and only then does the consumer commit the offsets. COPY has no
``ON CONFLICT``: a batch that holds a line stored already (a redelivery) or a line of a job
deleted meanwhile fails on the primary or foreign key, and is written again with the idempotent
INSERT, which skips both. Lines are stored and published as the attempt that printed them, and
published as the JSON they came in (:class:`~chronoverse.logs.ShippedLines`), never decoded into
objects and encoded again. Live viewers de-duplicate by (attempt, seq) and fill any gap from
Postgres, so a lost Redis message delays nothing and duplicates no line.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
import redis
from prometheus_client import Counter

from chronoverse.kafka.consumer import Record
from chronoverse.logs import (
    EndMessage,
    ShippedLines,
    encode_live_end,
    encode_live_shipped,
    live_channel,
)
from chronoverse.postgres import Pool
from chronoverse.sql import Queries

logger = logging.getLogger(__name__)
QUERIES = Queries.load(Path(__file__).with_name("queries.sql"))

LINES_STORED = Counter("chronoverse_log_lines_stored", "Log lines written to Postgres.")
LOGS_CLOSED = Counter("chronoverse_log_streams_closed", "Jobs whose log end marker was stored.")
FANOUT_FAILURES = Counter("chronoverse_log_fanout_failures", "Batches not published on Redis.")
REWRITTEN = Counter(
    "chronoverse_log_batches_rewritten",
    "Batches whose COPY met a line stored already or a deleted job, written again with INSERT.",
)
# A line stored already (a redelivered batch), or a line of a job deleted meanwhile.
_REWRITE = (psycopg.errors.UniqueViolation, psycopg.errors.ForeignKeyViolation)


@dataclass(frozen=True, kw_only=True)
class Gathered:
    """A batch's lines messages by (job, attempt), and each job's newest end marker."""

    lines: dict[tuple[UUID, int], list[ShippedLines]]
    ends: dict[UUID, EndMessage]

    @property
    def line_count(self) -> int:
        return sum(len(m.lines) for messages in self.lines.values() for m in messages)


def gather(messages: Sequence[ShippedLines | EndMessage]) -> Gathered:
    """Group a batch's messages (pure). Of several end markers of one job, the newest attempt's
    (the last of equals) is kept: one UPDATE row per job."""
    lines: dict[tuple[UUID, int], list[ShippedLines]] = {}
    ends: dict[UUID, EndMessage] = {}
    for message in messages:
        if isinstance(message, ShippedLines):
            lines.setdefault((message.job_id, message.attempt), []).append(message)
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
        self._locks: dict[tuple[str, int], threading.Lock] = {}
        self._locks_lock = threading.Lock()

    def handle(self, batch: Sequence[Record[ShippedLines | EndMessage]]) -> None:
        gathered = gather([record.value for record in batch])
        # One partition's batches are stored and published one at a time; other partitions'
        # still run meanwhile. Two at once often committed out of order, a gap in every
        # follower's live lines, which then read the missing lines from Postgres (twice the
        # server's CPU behind a burst). This is mutual exclusion, not offset order: the consumer
        # hands batches out in offset order, but a Lock is not FIFO, so a later batch may take it
        # first, and a retried message comes after later ones (ConsumerLoop promises no order
        # within a partition). Out of order costs a follower a read, never a line.
        with self._one_at_a_time(batch[0].topic, batch[0].partition):
            self._write(gathered)

    def _one_at_a_time(self, topic: str, partition: int) -> threading.Lock:
        with self._locks_lock:
            return self._locks.setdefault((topic, partition), threading.Lock())

    def _write(self, gathered: Gathered) -> None:
        try:
            self._store(gathered, copy=True)
        except _REWRITE as exc:
            REWRITTEN.inc()
            logger.info(
                "log batch written again without COPY: %s",
                exc.diag.message_primary,
                extra={"action": "log_batch_rewritten"},
            )
            self._store(gathered, copy=False)
        self._fan_out(gathered)

    def _store(self, batch: Gathered, *, copy: bool) -> None:
        ends = list(batch.ends.values())
        with self._pool.connection() as conn:
            if batch.lines:
                if copy:
                    _copy_lines(conn, batch)
                else:
                    _insert_lines(conn, batch)
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
        LINES_STORED.inc(batch.line_count)
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
            for (job_id, attempt), messages in batch.lines.items():
                pipe.publish(
                    live_channel(job_id),
                    encode_live_shipped((m.lines_json for m in messages), attempt=attempt),
                )
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


def _copy_lines(conn: psycopg.Connection[Any], batch: Gathered) -> None:
    with conn.cursor().copy(QUERIES.copy_lines) as copy:
        write = copy.write_row
        for (job_id, attempt), messages in batch.lines.items():
            for message in messages:
                for line in message.lines:
                    write((job_id, attempt, line["seq"], line["stream"], line["ts"], line["line"]))


def _insert_lines(conn: psycopg.Connection[Any], batch: Gathered) -> None:
    rows = [
        (job_id, attempt, line)
        for (job_id, attempt), messages in batch.lines.items()
        for message in messages
        for line in message.lines
    ]
    conn.execute(
        QUERIES.insert_lines,
        {
            "job_ids": [job_id for job_id, _, _ in rows],
            "attempts": [attempt for _, attempt, _ in rows],
            "seqs": [line["seq"] for _, _, line in rows],
            "streams": [line["stream"] for _, _, line in rows],
            "ts": [line["ts"] for _, _, line in rows],
            "lines": [line["line"] for _, _, line in rows],
        },
    )
