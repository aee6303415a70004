"""The consumer loop every worker uses.

Guarantees, in order of importance:

* **Commit after the outcome.** An offset is committed only when the handler for it, and for every
  earlier offset of the partition, has returned. A crash before that redelivers the message, so
  handlers must be idempotent (conditional updates in Postgres make them so).
* **Malformed messages are skipped.** A message the decoder rejects is logged with its coordinates
  and committed past; it never blocks its partition or crash-loops the worker.
* **Back-pressure.** When ``max_in_flight`` messages are being handled, the loop takes no more. If
  none finishes within ``pause_after_s``, the assigned partitions are paused; they resume once half
  the work has drained. The loop keeps polling meanwhile, so group membership and rebalance
  callbacks stay alive. (Pausing at once would be costly with fast handlers: librdkafka drops a
  paused partition's prefetched messages and fetches a resumed one only at its broker thread's
  next wake-up, up to ``fetch.wait.max.ms`` later, which capped such a loop at about
  ``max_in_flight`` messages per half second.)
* **Rebalances.** On revoke, the loop waits (bounded) for the revoked partitions' work, commits what
  finished and forgets the rest: the new owner gets it again. A lost assignment commits nothing.
* **Clean shutdown.** On stop, the loop stops fetching, waits for in-flight work, commits and leaves
  the group, so the partitions move to another member at once.

A handler that raises stops the loop with :class:`HandlerError` once the in-flight work has drained;
the failed batch stays uncommitted and is redelivered to whoever owns the partition next. Handlers
own their retries of transient failures.

With ``concurrency > 1`` batches of one partition may run at the same time: there is no ordering
guarantee within a partition. Chronoverse's handlers do not need one.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

import confluent_kafka
from prometheus_client import Counter, Gauge

from chronoverse.errors import HandlerError, KafkaError, MalformedMessageError
from chronoverse.kafka.config import consumer_config
from chronoverse.kafka.offsets import OffsetTracker, TopicPartition
from chronoverse.settings import KafkaSettings

logger = logging.getLogger(__name__)

T = TypeVar("T")

MESSAGES = Counter(
    "chronoverse_kafka_messages",
    "Messages taken from Kafka, by outcome (handled, malformed, failed).",
    ["group", "topic", "outcome"],
)
IN_FLIGHT = Gauge("chronoverse_kafka_in_flight", "Messages being handled.", ["group"])
PAUSES = Counter(
    "chronoverse_kafka_pauses", "Times the consumer paused under back-pressure.", ["group"]
)


@dataclass(frozen=True, kw_only=True)
class Record(Generic[T]):
    """A decoded message with its coordinates."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: T
    timestamp_ms: int | None


Decoder = Callable[[bytes | None, bytes | None], T]
"""Turn a message's key and value into a domain value; raise MalformedMessageError if impossible."""

BatchHandler = Callable[[Sequence[Record[T]]], None]
"""Record the outcome of a batch (all from one partition). Returning means: safe to commit."""


@dataclass(frozen=True, kw_only=True)
class ConsumerOptions:
    group_id: str
    topics: tuple[str, ...]
    client_id: str
    max_batch_size: int = 1
    concurrency: int = 1
    max_in_flight: int = 256
    poll_timeout_s: float = 0.1
    pause_after_s: float = 0.5
    revoke_timeout_s: float = 10.0
    shutdown_timeout_s: float = 30.0


@dataclass(frozen=True, kw_only=True)
class _Batch(Generic[T]):
    tp: TopicPartition
    epoch: int
    records: tuple[Record[T], ...]


class ConsumerLoop(Generic[T]):
    def __init__(
        self,
        settings: KafkaSettings,
        options: ConsumerOptions,
        *,
        decode: Decoder[T],
        handle: BatchHandler[T],
    ) -> None:
        self._settings = settings
        self._options = options
        self._decode = decode
        self._handle = handle
        self._tracker = OffsetTracker()
        self._completions: queue.SimpleQueue[tuple[_Batch[T], BaseException | None]] = (
            queue.SimpleQueue()
        )
        self._paused: set[TopicPartition] = set()
        # Batches submitted and not yet reaped, per partition (failed ones included).
        self._outstanding: dict[TopicPartition, int] = {}
        self._failure: HandlerError | None = None
        self._consumer: confluent_kafka.Consumer | None = None
        self._assigned = threading.Event()

    @property
    def paused_partitions(self) -> frozenset[TopicPartition]:
        """Partitions paused under back-pressure (read from other threads for monitoring)."""
        return frozenset(self._paused)

    @property
    def has_assignment(self) -> bool:
        """True once the group has given this member at least one partition."""
        return self._assigned.is_set()

    def run(self, stop: threading.Event) -> None:
        """Consume until ``stop`` is set or a handler fails."""
        opts = self._options
        config = consumer_config(self._settings, client_id=opts.client_id, group_id=opts.group_id)
        config["on_commit"] = self._on_commit
        consumer = confluent_kafka.Consumer(config, logger=logging.getLogger("kafka"))
        self._consumer = consumer
        executor = ThreadPoolExecutor(
            max_workers=opts.concurrency, thread_name_prefix=f"{opts.group_id}-handler"
        )
        consumer.subscribe(
            list(opts.topics),
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        logger.info(
            "consumer started",
            extra={"action": "consumer_start", "group": opts.group_id, "topics": opts.topics},
        )
        full_since: float | None = None
        try:
            while not stop.is_set() and self._failure is None:
                self._reap(block_s=0.0)
                self._commit(asynchronous=True)
                if self._tracker.in_flight() < opts.max_in_flight or self._paused:
                    full_since = None
                else:
                    # Full: wait for a handler to finish; pause only if none does for a while.
                    full_since = full_since if full_since is not None else time.monotonic()
                    if time.monotonic() - full_since < opts.pause_after_s:
                        self._reap(block_s=opts.poll_timeout_s)
                        continue
                self._apply_backpressure()
                capacity = opts.max_in_flight - self._tracker.in_flight()
                messages = self._fetch(consumer, max(1, min(capacity, 1000)))
                self._dispatch(executor, messages)
        finally:
            self._shutdown(executor)
        if self._failure is not None:
            raise self._failure

    def _fetch(
        self, consumer: confluent_kafka.Consumer, limit: int
    ) -> list[confluent_kafka.Message]:
        """Up to ``limit`` messages: what is ready now, or else the first to arrive within the poll
        timeout together with whatever came with it.

        ``consume(n, timeout)`` alone would hold a lone message until ``n`` arrived or the timeout
        passed, adding up to ``poll_timeout_s`` of latency to every message on a quiet topic.
        """
        messages = consumer.consume(num_messages=limit, timeout=0)
        if messages:
            return messages
        first = consumer.poll(timeout=self._options.poll_timeout_s)
        if first is None:
            return []
        if limit == 1:
            return [first]
        return [first, *consumer.consume(num_messages=limit - 1, timeout=0)]

    # --- dispatch -----------------------------------------------------------------------------

    def _dispatch(
        self, executor: ThreadPoolExecutor, messages: list[confluent_kafka.Message]
    ) -> None:
        batches: dict[TopicPartition, list[Record[T]]] = {}
        epochs: dict[TopicPartition, int] = {}
        group = self._options.group_id
        for message in messages:
            error = message.error()
            if error is not None:
                if error.fatal():
                    raise KafkaError(f"fatal consumer error: {error}")
                logger.warning("consumer error: %s", error, extra={"action": "consumer_error"})
                continue
            # A message without an error always has its coordinates.
            topic = cast(str, message.topic())
            partition = cast(int, message.partition())
            offset = cast(int, message.offset())
            tp = (topic, partition)
            epoch = self._tracker.start(tp, offset)
            try:
                value = self._decode(message.key(), message.value())
            except MalformedMessageError as exc:
                self._tracker.done(tp, offset, epoch)
                MESSAGES.labels(group, topic, "malformed").inc()
                logger.warning(
                    "skipping malformed message at %s[%d]@%d: %s",
                    topic,
                    partition,
                    offset,
                    exc.reason,
                    extra={
                        "action": "message_malformed",
                        "topic": topic,
                        "partition": partition,
                        "offset": offset,
                    },
                )
                continue
            epochs[tp] = epoch
            _, timestamp = message.timestamp()
            batches.setdefault(tp, []).append(
                Record(
                    topic=topic,
                    partition=partition,
                    offset=offset,
                    key=message.key(),
                    value=value,
                    timestamp_ms=timestamp if timestamp > 0 else None,
                )
            )
        size = self._options.max_batch_size
        for tp, records in batches.items():
            for start in range(0, len(records), size):
                batch = _Batch(
                    tp=tp, epoch=epochs[tp], records=tuple(records[start : start + size])
                )
                self._outstanding[tp] = self._outstanding.get(tp, 0) + 1
                future = executor.submit(self._handle, batch.records)
                future.add_done_callback(self._completion_callback(batch))
        IN_FLIGHT.labels(group).set(self._tracker.in_flight())

    def _completion_callback(self, batch: _Batch[T]) -> Callable[[Future[None]], None]:
        def done(future: Future[None]) -> None:
            self._completions.put((batch, future.exception()))

        return done

    def _reap(self, *, block_s: float) -> int:
        """Apply finished batches to the offset tracker; return how many were applied."""
        applied = 0
        group = self._options.group_id
        while True:
            try:
                batch, exc = (
                    self._completions.get(timeout=block_s)
                    if block_s > 0 and applied == 0
                    else self._completions.get_nowait()
                )
            except queue.Empty:
                break
            applied += 1
            self._outstanding[batch.tp] -= 1
            topic, partition = batch.tp
            if exc is not None:
                # Leave the offsets in flight: the watermark stops below them; they are redelivered.
                MESSAGES.labels(group, topic, "failed").inc(len(batch.records))
                logger.error(
                    "handler failed on %s[%d]",
                    topic,
                    partition,
                    exc_info=exc,
                    extra={"action": "handler_failed", "topic": topic, "partition": partition},
                )
                if self._failure is None:
                    failure = HandlerError(topic, partition, tuple(r.offset for r in batch.records))
                    failure.__cause__ = exc
                    self._failure = failure
                continue
            MESSAGES.labels(group, topic, "handled").inc(len(batch.records))
            for record in batch.records:
                self._tracker.done(batch.tp, record.offset, batch.epoch)
        if applied:
            IN_FLIGHT.labels(group).set(self._tracker.in_flight())
        return applied

    def _running(self, partitions: list[TopicPartition] | None) -> int:
        tps = self._outstanding.keys() if partitions is None else partitions
        return sum(self._outstanding.get(tp, 0) for tp in tps)

    def _drain(self, partitions: list[TopicPartition] | None, timeout_s: float) -> None:
        """Wait (bounded) until no handler is running for ``partitions`` (None: all)."""
        deadline = time.monotonic() + timeout_s
        while self._running(partitions) > 0 and time.monotonic() < deadline:
            self._reap(block_s=0.05)

    # --- commits and back-pressure --------------------------------------------------------------

    def _commit(
        self, *, asynchronous: bool, partitions: list[TopicPartition] | None = None
    ) -> None:
        offsets = self._tracker.to_commit(partitions)
        if not offsets or self._consumer is None:
            return
        tps = [confluent_kafka.TopicPartition(t, p, o) for (t, p), o in offsets.items()]
        try:
            if asynchronous:
                self._consumer.commit(offsets=tps, asynchronous=True)
            else:
                self._consumer.commit(offsets=tps, asynchronous=False)
        except confluent_kafka.KafkaException as exc:
            # Not fatal: a later commit covers these offsets, or they are redelivered.
            logger.warning("offset commit failed: %s", exc, extra={"action": "commit_failed"})

    def _on_commit(self, error: Any, partitions: list[confluent_kafka.TopicPartition]) -> None:
        if error is not None:
            logger.warning("offset commit failed: %s", error, extra={"action": "commit_failed"})

    def _apply_backpressure(self) -> None:
        consumer = self._consumer
        if consumer is None:
            return
        in_flight = self._tracker.in_flight()
        limit = self._options.max_in_flight
        if in_flight >= limit:
            assigned = {(tp.topic, tp.partition) for tp in consumer.assignment()}
            to_pause = assigned - self._paused
            if to_pause:
                consumer.pause([confluent_kafka.TopicPartition(t, p) for t, p in to_pause])
                if not self._paused:
                    PAUSES.labels(self._options.group_id).inc()
                    logger.debug(
                        "paused: %d messages in flight",
                        in_flight,
                        extra={"action": "consumer_pause"},
                    )
                self._paused |= to_pause
        elif self._paused and in_flight <= limit // 2:
            consumer.resume([confluent_kafka.TopicPartition(t, p) for t, p in self._paused])
            logger.debug(
                "resumed: %d messages in flight", in_flight, extra={"action": "consumer_resume"}
            )
            self._paused.clear()

    # --- rebalance callbacks (run inside consume(), on the loop thread) -------------------------

    def _on_assign(
        self, consumer: confluent_kafka.Consumer, partitions: list[confluent_kafka.TopicPartition]
    ) -> None:
        tps = [(tp.topic, tp.partition) for tp in partitions]
        self._tracker.assign(tps)
        if tps:
            self._assigned.set()
        logger.info(
            "assigned %s",
            tps,
            extra={"action": "partitions_assigned", "group": self._options.group_id},
        )

    def _on_revoke(
        self, consumer: confluent_kafka.Consumer, partitions: list[confluent_kafka.TopicPartition]
    ) -> None:
        tps = [(tp.topic, tp.partition) for tp in partitions]
        self._drain(tps, self._options.revoke_timeout_s)
        self._commit(asynchronous=False, partitions=tps)
        self._forget(tps)
        logger.info(
            "revoked %s",
            tps,
            extra={"action": "partitions_revoked", "group": self._options.group_id},
        )

    def _on_lost(
        self, consumer: confluent_kafka.Consumer, partitions: list[confluent_kafka.TopicPartition]
    ) -> None:
        tps = [(tp.topic, tp.partition) for tp in partitions]
        self._forget(tps)
        logger.warning(
            "lost %s", tps, extra={"action": "partitions_lost", "group": self._options.group_id}
        )

    def _forget(self, tps: list[TopicPartition]) -> None:
        # Work still running for these partitions finishes, but its offsets no longer count.
        self._tracker.revoke(tps)
        self._paused.difference_update(tps)
        IN_FLIGHT.labels(self._options.group_id).set(self._tracker.in_flight())

    # --- shutdown -------------------------------------------------------------------------------

    def _shutdown(self, executor: ThreadPoolExecutor) -> None:
        consumer = self._consumer
        self._drain(None, self._options.shutdown_timeout_s)
        if self._tracker.in_flight():
            logger.warning(
                "shutting down with %d messages unfinished; they will be redelivered",
                self._tracker.in_flight(),
                extra={"action": "consumer_shutdown_unfinished"},
            )
        self._commit(asynchronous=False)
        executor.shutdown(wait=False, cancel_futures=True)
        if consumer is not None:
            try:
                consumer.close()  # leaves the group: the partitions move at once
            except (RuntimeError, confluent_kafka.KafkaException) as exc:
                logger.warning(
                    "consumer close failed: %s", exc, extra={"action": "consumer_close_failed"}
                )
        self._consumer = None
        logger.info(
            "consumer stopped", extra={"action": "consumer_stop", "group": self._options.group_id}
        )
