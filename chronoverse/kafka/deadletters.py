"""Dead-letter topics: the format of a dead letter, writing one, and reading and replaying them.

A message that its consumer cannot decode, or whose handler keeps failing, is written to
``<topic>.dlq`` and its offset committed, so that its partition moves on. A dead letter is the
original message, byte for byte: the same key and value, so that a replay re-publishes exactly what
was received. Headers (UTF-8 text) say where it came from and why it was given up on:

================================  ==============================================================
``chronoverse.dlq.topic``         the topic it was read from (with the installation's prefix)
``chronoverse.dlq.partition``     its partition there
``chronoverse.dlq.offset``        its offset there
``chronoverse.dlq.timestamp_ms``  its timestamp (milliseconds since the epoch), when it had one
``chronoverse.dlq.group``         the consumer group that gave up on it
``chronoverse.dlq.reason``        ``malformed`` (the decoder refused it) or ``handler_failed``
``chronoverse.dlq.error``         the exception: ``Type: message``
``chronoverse.dlq.attempts``      how many times the handler was tried (0 when malformed)
``chronoverse.dlq.at``            when it was dead-lettered (ISO 8601, UTC)
================================  ==============================================================

A replay reads a dead-letter topic from where the previous replay stopped (the consumer group
``chronoverse-dlq-replay``, with the installation's prefix), publishes each letter's key and value
to the original topic, and commits only what the broker confirmed, so no letter is replayed twice.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, Protocol

import confluent_kafka

from chronoverse.domain import DEAD_LETTER_SUFFIX
from chronoverse.errors import KafkaError, MalformedMessageError, PublishError
from chronoverse.kafka.config import common_config, producer_config
from chronoverse.settings import KafkaSettings

logger = logging.getLogger(__name__)

HEADER_PREFIX = "chronoverse.dlq."
MAX_ERROR_CHARS = 2000
# librdkafka's default cap is 1,000,000 bytes, and so is the largest message Chronoverse decodes;
# Kafka brokers accept 1 MiB by default.
MAX_DEAD_LETTER_BYTES = 1_048_576
REPLAY_GROUP = "chronoverse-dlq-replay"


class DeadLetterReason(enum.StrEnum):
    MALFORMED = "malformed"
    HANDLER_FAILED = "handler_failed"


def dead_letter_topic(topic: str) -> str:
    """The dead-letter topic of a broker-side topic name (``jobs`` -> ``jobs.dlq``)."""
    return f"{topic}{DEAD_LETTER_SUFFIX}"


def describe_error(exc: BaseException) -> str:
    """``Type: message`` of an exception, bounded in length."""
    reason = exc.reason if isinstance(exc, MalformedMessageError) else str(exc)
    return f"{type(exc).__name__}: {reason}"[:MAX_ERROR_CHARS]


@dataclass(frozen=True, kw_only=True)
class DeadLetter:
    """A message given up on, with where it came from and why."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None
    group: str
    reason: DeadLetterReason
    error: str
    attempts: int
    dead_lettered_at: datetime

    def headers(self) -> list[tuple[str, bytes]]:
        fields: dict[str, object] = {
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "timestamp_ms": self.timestamp_ms,
            "group": self.group,
            "reason": self.reason.value,
            "error": self.error,
            "attempts": self.attempts,
            "at": self.dead_lettered_at.isoformat(),
        }
        return [
            (f"{HEADER_PREFIX}{name}", str(value).encode())
            for name, value in fields.items()
            if value is not None
        ]

    @classmethod
    def from_message(
        cls,
        key: bytes | None,
        value: bytes | None,
        headers: Iterable[tuple[str, str | bytes | None]] | None,
    ) -> DeadLetter:
        """Read a dead letter back; a message without the headers above is malformed."""
        found = {
            name.removeprefix(HEADER_PREFIX): (
                raw.decode(errors="replace") if isinstance(raw, bytes) else raw or ""
            )
            for name, raw in headers or ()
            if name.startswith(HEADER_PREFIX)
        }
        try:
            timestamp = found.get("timestamp_ms")
            return cls(
                topic=found["topic"],
                partition=int(found["partition"]),
                offset=int(found["offset"]),
                key=key,
                value=value,
                timestamp_ms=int(timestamp) if timestamp else None,
                group=found["group"],
                reason=DeadLetterReason(found["reason"]),
                error=found["error"],
                attempts=int(found["attempts"]),
                dead_lettered_at=datetime.fromisoformat(found["at"]),
            )
        except (KeyError, ValueError) as exc:
            raise MalformedMessageError(f"not a dead letter: {exc!r} missing or invalid") from exc


@dataclass(frozen=True, kw_only=True)
class Outgoing:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]] = ()


def _deliver(
    producer: confluent_kafka.Producer, messages: Sequence[Outgoing], timeout_s: float
) -> list[confluent_kafka.KafkaError | None]:
    """Produce ``messages`` and wait for each one's delivery report (the error, or None)."""
    reports: list[confluent_kafka.KafkaError | None] = [None] * len(messages)
    pending = len(messages)
    lock = threading.Lock()

    def reporter(index: int) -> Any:
        def report(error: confluent_kafka.KafkaError | None, _: Any) -> None:
            nonlocal pending
            with lock:
                reports[index] = error
                pending -= 1

        return report

    for index, message in enumerate(messages):
        while True:
            try:
                producer.produce(
                    message.topic,
                    key=message.key,
                    value=message.value,
                    headers=list(message.headers),
                    on_delivery=reporter(index),
                )
                break
            except BufferError:
                producer.poll(0.05)  # the local queue is full: serve reports to make room
    deadline = time.monotonic() + timeout_s
    while pending > 0 and time.monotonic() < deadline:
        producer.poll(0.05)
    if pending > 0:
        raise PublishError(messages[0].topic, None, f"{pending} messages unconfirmed in time")
    return reports


class DeadLetterSink(Protocol):
    """Where a consumer writes its dead letters; returning means the broker confirmed it."""

    def write(self, letter: DeadLetter) -> None: ...

    def close(self) -> None: ...


class DeadLetterWriter:
    """Writes dead letters and waits for the broker's confirmation; safe to share by threads.

    The librdkafka producer is made on first use (most consumers never write a dead letter), and
    made again after a fatal error (a broker that lost its data forgets idempotent producers).
    """

    def __init__(
        self, settings: KafkaSettings, *, client_id: str, delivery_timeout_s: float = 30.0
    ) -> None:
        self._config = producer_config(settings, client_id=client_id)
        self._config["message.timeout.ms"] = int(delivery_timeout_s * 1000)
        # Room for the headers on top of a message as large as the original topic accepted.
        self._config["message.max.bytes"] = MAX_DEAD_LETTER_BYTES
        self._timeout_s = delivery_timeout_s + 5  # librdkafka reports a failure by then
        self._producer: confluent_kafka.Producer | None = None
        self._lock = threading.Lock()

    def write(self, letter: DeadLetter) -> None:
        """Write ``letter`` to its topic's dead-letter topic; raise PublishError if unconfirmed."""
        target = dead_letter_topic(letter.topic)
        message = Outgoing(
            topic=target, key=letter.key, value=letter.value, headers=letter.headers()
        )
        with self._lock:
            if self._producer is None:
                self._producer = confluent_kafka.Producer(
                    self._config, logger=logging.getLogger("kafka")
                )
            try:
                [error] = _deliver(self._producer, [message], self._timeout_s)
            except (PublishError, confluent_kafka.KafkaException) as exc:
                self._producer = None  # a fresh instance next time
                raise PublishError(target, None, str(exc)) from exc
            if error is not None:
                if error.fatal():
                    self._producer = None
                raise PublishError(target, None, str(error))

    def close(self, timeout_s: float = 10.0) -> None:
        with self._lock:
            if self._producer is not None:
                self._producer.flush(timeout_s)
                self._producer = None


# --- reading and replaying ----------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class StoredDeadLetter:
    """A message of a dead-letter topic: its place there, and the letter (None if unreadable)."""

    partition: int
    offset: int
    letter: DeadLetter | None
    problem: str | None = None


class DeadLetterReader:
    """Reads a dead-letter topic up to where it ended when opened: from the start, or, with a
    ``group``, from where that group committed."""

    def __init__(
        self,
        settings: KafkaSettings,
        topic: str,
        *,
        group: str | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        self._topic = topic
        self._group = group
        self._timeout_s = timeout_s
        self._consumer = confluent_kafka.Consumer(
            {
                **common_config(settings, client_id="chronoverse-dlq"),
                # Required by librdkafka; without a group of our own nothing is ever committed.
                "group.id": group or settings.group("chronoverse-dlq-reader"),
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
            },
            logger=logging.getLogger("kafka"),
        )

    def __enter__(self) -> DeadLetterReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._consumer.close()

    def _ranges(self) -> dict[int, tuple[int, int]]:
        """Per partition, the offsets to read: [start, end)."""
        consumer, topic, timeout = self._consumer, self._topic, self._timeout_s
        try:
            metadata = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
            if metadata is None or metadata.error is not None:
                raise KafkaError(
                    f"no topic {topic!r} at the broker: `chronoverse topics create` makes it"
                )
            partitions = sorted(metadata.partitions)
            ends = {
                p: consumer.get_watermark_offsets(
                    confluent_kafka.TopicPartition(topic, p), timeout=timeout, cached=False
                )
                for p in partitions
            }
            committed = {p: -1 for p in partitions}
            if self._group is not None:
                for tp in consumer.committed(
                    [confluent_kafka.TopicPartition(topic, p) for p in partitions],
                    timeout=timeout,
                ):
                    committed[tp.partition] = tp.offset
        except confluent_kafka.KafkaException as exc:
            raise KafkaError(f"cannot read {topic!r}: {exc}") from exc
        ranges: dict[int, tuple[int, int]] = {}
        for p, watermarks in ends.items():
            if watermarks is None:
                raise KafkaError(f"cannot read the offsets of {topic!r} partition {p}")
            low, high = watermarks
            start = max(low, committed[p])
            if start < high:
                ranges[p] = (start, high)
        return ranges

    def read(self, *, limit: int | None = None) -> list[StoredDeadLetter]:
        """The dead letters in (partition, offset) order, at most ``limit`` of them."""
        ranges = self._ranges()
        if not ranges:
            return []
        self._consumer.assign(
            [confluent_kafka.TopicPartition(self._topic, p, s) for p, (s, _) in ranges.items()]
        )
        found: list[StoredDeadLetter] = []
        remaining = dict(ranges)
        deadline = time.monotonic() + self._timeout_s
        while remaining and (limit is None or len(found) < limit):
            if time.monotonic() > deadline:
                raise KafkaError(f"reading {self._topic!r} timed out")
            message = self._consumer.poll(0.2)
            if message is None:
                continue
            if message.error() is not None:
                raise KafkaError(f"cannot read {self._topic!r}: {message.error()}")
            partition, offset = int(message.partition() or 0), int(message.offset() or 0)
            if partition not in remaining or offset >= remaining[partition][1]:
                continue
            found.append(self._stored(message, partition, offset))
            deadline = time.monotonic() + self._timeout_s
            if offset + 1 >= remaining[partition][1]:
                del remaining[partition]
                self._consumer.pause([confluent_kafka.TopicPartition(self._topic, partition)])
        return sorted(found, key=lambda s: (s.partition, s.offset))

    @staticmethod
    def _stored(message: confluent_kafka.Message, partition: int, offset: int) -> StoredDeadLetter:
        try:
            headers = message.headers()
            pairs = list(headers.items()) if isinstance(headers, dict) else headers
            letter = DeadLetter.from_message(message.key(), message.value(), pairs)
        except MalformedMessageError as exc:
            return StoredDeadLetter(
                partition=partition, offset=offset, letter=None, problem=str(exc)
            )
        return StoredDeadLetter(partition=partition, offset=offset, letter=letter)

    def commit(self, letters: Iterable[StoredDeadLetter]) -> None:
        """Commit past ``letters`` (for the reader's group): a later read starts after them."""
        if self._group is None:
            raise KafkaError("a reader without a group commits nothing")
        ends: dict[int, int] = {}
        for stored in letters:
            ends[stored.partition] = max(ends.get(stored.partition, 0), stored.offset + 1)
        if not ends:
            return
        try:
            self._consumer.commit(
                offsets=[
                    confluent_kafka.TopicPartition(self._topic, p, o) for p, o in ends.items()
                ],
                asynchronous=False,
            )
        except confluent_kafka.KafkaException as exc:
            raise KafkaError(f"cannot commit the replay of {self._topic!r}: {exc}") from exc


@dataclass(frozen=True, kw_only=True)
class Replay:
    replayed: list[StoredDeadLetter]
    skipped: list[StoredDeadLetter]  # unreadable: not in the dead-letter format


def replay(
    settings: KafkaSettings, topic: str, *, limit: int | None = None, timeout_s: float = 30.0
) -> Replay:
    """Re-publish the dead letters of ``topic`` (broker-side name) that no replay has published.

    Each letter's key and value go back to ``topic``; the replay group's offsets move past a
    letter only once the broker confirmed it, so a failed replay can simply be run again.
    """
    source = dead_letter_topic(topic)
    with DeadLetterReader(
        settings, source, group=settings.group(REPLAY_GROUP), timeout_s=timeout_s
    ) as reader:
        stored = reader.read(limit=limit)
        readable = [s for s in stored if s.letter is not None]
        producer = confluent_kafka.Producer(
            {**producer_config(settings, client_id="chronoverse-dlq-replay")},
            logger=logging.getLogger("kafka"),
        )
        reports = _deliver(
            producer,
            [
                Outgoing(topic=topic, key=s.letter.key, value=s.letter.value)
                for s in readable
                if s.letter is not None
            ],
            timeout_s,
        )
        failed = {(s.partition, s.offset): e for s, e in zip(readable, reports, strict=True) if e}
        # Per partition, commit up to the first letter that did not go out.
        done: list[StoredDeadLetter] = []
        blocked: set[int] = set()
        for s in stored:
            if s.partition in blocked:
                continue
            if (s.partition, s.offset) in failed:
                blocked.add(s.partition)
                continue
            done.append(s)
        reader.commit(done)
    if failed:
        (partition, offset), error = next(iter(failed.items()))
        raise PublishError(topic, None, f"replaying {source}[{partition}]@{offset}: {error}")
    return Replay(
        replayed=[s for s in done if s.letter is not None],
        skipped=[s for s in done if s.letter is None],
    )
