"""The consumer loop's units of work: records for handlers, batches and dead letters for its
threads, the retries waiting for their time, and what follows a failed batch (pure)."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Generic, TypeVar, cast

import confluent_kafka

from chronoverse.kafka.deadletters import DeadLetter, DeadLetterReason, describe_error
from chronoverse.kafka.failures import GiveUp, RetryPolicy
from chronoverse.kafka.offsets import TopicPartition

T = TypeVar("T")
U = TypeVar("U")


@dataclass(frozen=True, kw_only=True)
class Record(Generic[T]):
    """A decoded message with its coordinates."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: T
    timestamp_ms: int | None

    def with_value(self, value: U) -> Record[U]:
        return Record(
            topic=self.topic,
            partition=self.partition,
            offset=self.offset,
            key=self.key,
            value=value,
            timestamp_ms=self.timestamp_ms,
        )


Decoder = Callable[[bytes | None, bytes | None], T]
"""Turn a message's key and value into a domain value; raise MalformedMessageError if impossible
(any other exception counts as malformed too)."""

BatchHandler = Callable[[Sequence[Record[T]]], None]
"""Record the outcome of a batch (all from one partition). Returning means: safe to commit."""


def received(message: confluent_kafka.Message) -> Record[bytes | None]:
    """A message as the broker delivered it (one without an error has its coordinates)."""
    _, timestamp = message.timestamp()
    return Record(
        topic=cast(str, message.topic()),
        partition=cast(int, message.partition()),
        offset=cast(int, message.offset()),
        key=message.key(),
        value=message.value(),
        timestamp_ms=timestamp if timestamp > 0 else None,
    )


@dataclass(frozen=True, kw_only=True)
class Batch(Generic[T]):
    """Records of one partition for the handler, under the assignment ``epoch``."""

    tp: TopicPartition
    epoch: int
    records: tuple[Record[T], ...]
    raw: tuple[bytes | None, ...]  # the values as received: what a dead letter keeps
    failures: int = 0


@dataclass(frozen=True, kw_only=True)
class Letter:
    """A dead letter to write; its offset is done once the broker confirmed it."""

    tp: TopicPartition
    epoch: int
    letter: DeadLetter
    failures: int = 0  # failed writes


Task = Batch[Any] | Letter


def dead_letter(
    record: Record[Any],
    raw: bytes | None,
    exc: BaseException,
    *,
    group: str,
    reason: DeadLetterReason,
    attempts: int,
    now: datetime,
) -> DeadLetter:
    return DeadLetter(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=record.key,
        value=raw,
        timestamp_ms=record.timestamp_ms,
        group=group,
        reason=reason,
        error=describe_error(exc),
        attempts=attempts,
        dead_lettered_at=now,
    )


@dataclass(frozen=True, kw_only=True)
class Retries:
    """Handle these again in ``delay_s``."""

    delay_s: float
    batches: tuple[Batch[Any], ...]


def after_failure(
    batch: Batch[Any],
    exc: BaseException,
    *,
    policy: RetryPolicy,
    group: str,
    now: datetime,
) -> Retries | Letter:
    """What follows a failure of ``batch``: its records again later (one by one, if it held
    several), or, once a lone record used up its retries, its dead letter."""
    failures = batch.failures + 1
    step = policy.after_failure(messages=len(batch.records), failures=failures)
    if isinstance(step, GiveUp):
        [record] = batch.records
        letter = dead_letter(
            record,
            batch.raw[0],
            exc,
            group=group,
            reason=DeadLetterReason.HANDLER_FAILED,
            attempts=failures,
            now=now,
        )
        return Letter(tp=batch.tp, epoch=batch.epoch, letter=letter)
    if step.split:
        batches = tuple(
            replace(batch, records=(record,), raw=(raw,), failures=failures)
            for record, raw in zip(batch.records, batch.raw, strict=True)
        )
    else:
        batches = (replace(batch, failures=failures),)
    return Retries(delay_s=step.delay_s, batches=batches)


class Waiting:
    """Tasks waiting for their retry, soonest first, on the caller's (monotonic) clock."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Task]] = []
        self._sequence = itertools.count()

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, task: Task, due: float) -> None:
        heapq.heappush(self._heap, (due, next(self._sequence), task))

    def pop_due(self, now: float) -> list[Task]:
        due: list[Task] = []
        while self._heap and self._heap[0][0] <= now:
            due.append(heapq.heappop(self._heap)[2])
        return due

    def drop(self, partitions: Collection[TopicPartition]) -> None:
        """Forget the tasks of these partitions (revoked: their next owner starts afresh)."""
        if any(task.tp in partitions for _, _, task in self._heap):
            self._heap = [entry for entry in self._heap if entry[2].tp not in partitions]
            heapq.heapify(self._heap)

    def clear(self) -> None:
        self._heap.clear()
