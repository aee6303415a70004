"""The consumer loop every worker uses.

Guarantees, in order of importance:

* **Commit after the outcome.** An offset is committed only when the outcome of its message, and
  of every earlier offset of the partition, is recorded: handled, or written to the dead-letter
  topic. A crash before that redelivers the message, so handlers must be idempotent (conditional
  updates in Postgres make them so).
* **No message stops a partition.** A message the decoder rejects, whatever it raises, is
  malformed: it is logged, counted and written to ``<topic>.dlq`` at once. A batch whose handler
  raises is split at once into single messages, each retried with exponential backoff
  (:mod:`chronoverse.kafka.failures`); one that still fails after its retries is written to
  ``<topic>.dlq`` with the error (:mod:`chronoverse.kafka.deadletters`). Retries wait in the loop,
  not in a handler thread, so later messages and other partitions keep moving meanwhile, and the
  loop keeps polling. A dead letter that cannot be written (the broker is down) is tried again,
  never dropped: its offset stays uncommitted until the broker confirms it.
* **Back-pressure.** When ``max_in_flight`` messages are being handled (or wait for a retry), the
  loop takes no more. If none finishes within ``pause_after_s``, the assigned partitions are
  paused; they resume once half the work has drained. The loop keeps polling meanwhile, so group
  membership and rebalance callbacks stay alive. (Pausing at once would be costly with fast
  handlers: librdkafka drops a paused partition's prefetched messages and fetches a resumed one
  only at its broker thread's next wake-up, up to ``fetch.wait.max.ms`` later, which capped such a
  loop at about ``max_in_flight`` messages per half second.)
* **Rebalances.** On revoke, the loop waits (bounded) for the revoked partitions' work, commits what
  finished and forgets the rest, retries included: the new owner gets it again. A lost assignment
  commits nothing.
* **Readiness.** What the group assigns is recorded in an
  :class:`~chronoverse.kafka.assignment.AssignmentWatch`: a member that holds no partition for a
  few session timeouts reports not ready, and the loop logs it once.
* **Clean shutdown.** On stop, the loop stops fetching, waits for in-flight work, commits and leaves
  the group, so the partitions move to another member at once. Retries still waiting are left
  uncommitted, for redelivery. A member stopped in the middle of a rebalance first lets it finish
  (bounded by the session timeout): tansu's coordinator never recovers from a member that leaves
  during a join, and would leave every later member of the group without partitions.

With ``concurrency > 1`` batches of one partition may run at the same time, and a retried message
is handled after later ones: there is no ordering guarantee within a partition. Chronoverse's
handlers do not need one.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import confluent_kafka

from chronoverse.errors import KafkaError
from chronoverse.kafka.assignment import AssignmentWatch
from chronoverse.kafka.config import consumer_config
from chronoverse.kafka.deadletters import (
    DeadLetterReason,
    DeadLetterSink,
    DeadLetterWriter,
    dead_letter_topic,
    describe_error,
)
from chronoverse.kafka.failures import RetryPolicy
from chronoverse.kafka.metrics import DEAD_LETTERS, IN_FLIGHT, MESSAGES, PAUSES
from chronoverse.kafka.offsets import OffsetTracker, TopicPartition
from chronoverse.kafka.work import (
    Batch,
    BatchHandler,
    Decoder,
    Letter,
    Record,
    Task,
    Waiting,
    after_failure,
    dead_letter,
    received,
)
from chronoverse.settings import KafkaSettings

__all__ = ["BatchHandler", "ConsumerLoop", "ConsumerOptions", "Decoder", "Record"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


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


# How often, at most, the loop looks at its assignment and at its topics' partitions.
_ASSIGNMENT_CHECK_S = 1.0
_PARTITIONS_CHECK_S = 5.0


class ConsumerLoop(Generic[T]):
    def __init__(
        self,
        settings: KafkaSettings,
        options: ConsumerOptions,
        *,
        decode: Decoder[T],
        handle: BatchHandler[T],
        watch: AssignmentWatch | None = None,
        dead_letters: DeadLetterSink | None = None,
    ) -> None:
        self._settings = settings
        self._options = options
        self._decode = decode
        self._handle = handle
        self._policy = RetryPolicy.from_settings(settings)
        self._watch = watch or AssignmentWatch.for_group(settings, options.group_id)
        self._letters = dead_letters or DeadLetterWriter(
            settings, client_id=f"{options.client_id}-dlq"
        )
        self._tracker = OffsetTracker()
        self._completions: queue.SimpleQueue[tuple[Task, BaseException | None]] = (
            queue.SimpleQueue()
        )
        self._paused: set[TopicPartition] = set()
        # Tasks submitted and not yet reaped, per partition (failed ones included).
        self._outstanding: dict[TopicPartition, int] = {}
        self._waiting = Waiting()
        self._executor: ThreadPoolExecutor | None = None
        self._consumer: confluent_kafka.Consumer | None = None
        self._closing = False
        # From subscribing, and from each revoke, until the group assigns (even nothing).
        self._rebalancing = True
        self._assigned = threading.Event()
        self._assignment_checked_at = -_ASSIGNMENT_CHECK_S
        self._partitions_checked_at = -_PARTITIONS_CHECK_S

    @property
    def paused_partitions(self) -> frozenset[TopicPartition]:
        """Partitions paused under back-pressure (read from other threads for monitoring)."""
        return frozenset(self._paused)

    @property
    def has_assignment(self) -> bool:
        """True once the group has given this member at least one partition."""
        return self._assigned.is_set()

    @property
    def watch(self) -> AssignmentWatch:
        return self._watch

    def run(self, stop: threading.Event) -> None:
        """Consume until ``stop`` is set (or a fatal broker error)."""
        opts = self._options
        config = consumer_config(self._settings, client_id=opts.client_id, group_id=opts.group_id)
        config["on_commit"] = self._on_commit
        consumer = confluent_kafka.Consumer(config, logger=logging.getLogger("kafka"))
        self._consumer = consumer
        executor = ThreadPoolExecutor(
            max_workers=opts.concurrency, thread_name_prefix=f"{opts.group_id}-handler"
        )
        self._executor = executor
        self._watch.restart()
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
            while not stop.is_set():
                self._reap(block_s=0.0)
                self._submit_due()
                self._commit(asynchronous=True)
                self._check_assignment(consumer)
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
                self._dispatch(messages)
        finally:
            self._shutdown(executor)

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

    def _dispatch(self, messages: list[confluent_kafka.Message]) -> None:
        batches: dict[TopicPartition, list[tuple[Record[T], bytes | None]]] = {}
        epochs: dict[TopicPartition, int] = {}
        group = self._options.group_id
        for message in messages:
            error = message.error()
            if error is not None:
                if error.fatal():
                    raise KafkaError(f"fatal consumer error: {error}")
                logger.warning("consumer error: %s", error, extra={"action": "consumer_error"})
                continue
            record = received(message)
            topic, partition, offset = record.topic, record.partition, record.offset
            tp = (topic, partition)
            epoch = self._tracker.start(tp, offset)
            try:
                value = self._decode(record.key, record.value)
            except Exception as exc:  # whatever a decoder raises, the message is malformed
                MESSAGES.labels(group, topic, "malformed").inc()
                logger.warning(
                    "malformed message at %s[%d]@%d: %s; writing it to %s",
                    topic,
                    partition,
                    offset,
                    describe_error(exc),
                    dead_letter_topic(topic),
                    extra={
                        "action": "message_malformed",
                        "topic": topic,
                        "partition": partition,
                        "offset": offset,
                    },
                )
                letter = dead_letter(
                    record,
                    record.value,
                    exc,
                    group=group,
                    reason=DeadLetterReason.MALFORMED,
                    attempts=0,
                    now=datetime.now(UTC),
                )
                self._submit(Letter(tp=tp, epoch=epoch, letter=letter))
                continue
            epochs[tp] = epoch
            batches.setdefault(tp, []).append((record.with_value(value), record.value))
        size = self._options.max_batch_size
        for tp, items in batches.items():
            for start in range(0, len(items), size):
                chunk = items[start : start + size]
                self._submit(
                    Batch(
                        tp=tp,
                        epoch=epochs[tp],
                        records=tuple(r for r, _ in chunk),
                        raw=tuple(raw for _, raw in chunk),
                    )
                )
        IN_FLIGHT.labels(group).set(self._tracker.in_flight())

    def _submit(self, task: Task) -> None:
        assert self._executor is not None
        self._outstanding[task.tp] = self._outstanding.get(task.tp, 0) + 1
        future: Future[None]
        if isinstance(task, Letter):
            future = self._executor.submit(self._letters.write, task.letter)
        else:
            future = self._executor.submit(self._handle, task.records)

        def done(future: Future[None]) -> None:
            if not future.cancelled():
                self._completions.put((task, future.exception()))

        future.add_done_callback(done)

    def _submit_due(self) -> None:
        """Submit the retries whose time has come (those of partitions still held)."""
        for task in self._waiting.pop_due(time.monotonic()):
            if self._tracker.is_current(task.tp, task.epoch):
                self._submit(task)

    # --- outcomes -------------------------------------------------------------------------------

    def _reap(self, *, block_s: float) -> int:
        """Apply finished tasks to the offset tracker; return how many were applied."""
        applied = 0
        group = self._options.group_id
        while True:
            try:
                task, exc = (
                    self._completions.get(timeout=block_s)
                    if block_s > 0 and applied == 0
                    else self._completions.get_nowait()
                )
            except queue.Empty:
                break
            applied += 1
            self._outstanding[task.tp] -= 1
            if isinstance(task, Letter):
                self._letter_done(task, exc)
            elif exc is not None:
                self._batch_failed(task, exc)
            else:
                MESSAGES.labels(group, task.tp[0], "handled").inc(len(task.records))
                for record in task.records:
                    self._tracker.done(task.tp, record.offset, task.epoch)
        if applied:
            IN_FLIGHT.labels(group).set(self._tracker.in_flight())
        return applied

    def _batch_failed(self, batch: Batch[Any], exc: BaseException) -> None:
        topic, partition = batch.tp
        offsets = [r.offset for r in batch.records]
        group = self._options.group_id
        MESSAGES.labels(group, topic, "failed").inc(len(batch.records))
        where = {"action": "handler_failed", "topic": topic, "partition": partition}
        if self._closing or not self._tracker.is_current(batch.tp, batch.epoch):
            # Stopping, or the partition moved: whoever owns it next gets these again.
            logger.warning(
                "handler failed on %s[%d] offsets %s: %s; left for redelivery",
                topic,
                partition,
                offsets,
                describe_error(exc),
                extra=where,
            )
            return
        follow = after_failure(batch, exc, policy=self._policy, group=group, now=datetime.now(UTC))
        if isinstance(follow, Letter):
            logger.error(
                "handler failed on %s[%d]@%d %d times; writing it to %s",
                topic,
                partition,
                follow.letter.offset,
                follow.letter.attempts,
                dead_letter_topic(topic),
                exc_info=exc,
                extra={**where, "action": "handler_gave_up", "offset": follow.letter.offset},
            )
            self._submit(follow)
            return
        # The first failure carries the traceback; later ones of an outage would only repeat it.
        logger.warning(
            "handler failed on %s[%d] offsets %s (failure %d): %s; retrying %sin %.1f s",
            topic,
            partition,
            offsets,
            batch.failures + 1,
            describe_error(exc),
            "one by one " if len(follow.batches) > 1 else "",
            follow.delay_s,
            exc_info=exc if batch.failures == 0 else None,
            extra=where,
        )
        due = time.monotonic() + follow.delay_s
        for retry in follow.batches:
            self._waiting.add(retry, due)

    def _letter_done(self, task: Letter, exc: BaseException | None) -> None:
        letter = task.letter
        if exc is None:
            self._tracker.done(task.tp, letter.offset, task.epoch)
            DEAD_LETTERS.labels(self._options.group_id, letter.topic, letter.reason.value).inc()
            logger.error(
                "dead-lettered %s[%d]@%d to %s (%s): %s",
                letter.topic,
                letter.partition,
                letter.offset,
                dead_letter_topic(letter.topic),
                letter.reason.value,
                letter.error,
                extra={
                    "action": "message_dead_lettered",
                    "topic": letter.topic,
                    "partition": letter.partition,
                    "offset": letter.offset,
                    "reason": letter.reason.value,
                },
            )
            return
        if self._closing or not self._tracker.is_current(task.tp, task.epoch):
            return  # uncommitted: redelivered, and dead-lettered again, by the next owner
        delay_s = self._policy.delay_s(task.failures + 1)
        logger.error(
            "cannot write the dead letter of %s[%d]@%d to %s (`chronoverse topics create` "
            "makes the topic); trying again in %.0f s: %s",
            letter.topic,
            letter.partition,
            letter.offset,
            dead_letter_topic(letter.topic),
            delay_s,
            exc,
            extra={"action": "dead_letter_failed", "topic": letter.topic},
        )
        self._waiting.add(replace(task, failures=task.failures + 1), time.monotonic() + delay_s)

    def _running(self, partitions: list[TopicPartition] | None) -> int:
        tps = self._outstanding.keys() if partitions is None else partitions
        return sum(self._outstanding.get(tp, 0) for tp in tps)

    def _drain(self, partitions: list[TopicPartition] | None, timeout_s: float) -> None:
        """Wait (bounded) until no handler is running for ``partitions`` (None: all)."""
        deadline = time.monotonic() + timeout_s
        while self._running(partitions) > 0 and time.monotonic() < deadline:
            self._reap(block_s=0.05)

    # --- commits, back-pressure and the assignment ------------------------------------------------

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

    def _check_assignment(self, consumer: confluent_kafka.Consumer) -> None:
        """While the member holds nothing, learn how many partitions its topics have (none: not
        stuck, the topics are missing); log once when it has held nothing for too long."""
        now = time.monotonic()
        if now - self._assignment_checked_at < _ASSIGNMENT_CHECK_S:
            return
        self._assignment_checked_at = now
        if self._watch.unassigned_s > 0 and now - self._partitions_checked_at >= (
            _PARTITIONS_CHECK_S
        ):
            self._partitions_checked_at = now
            try:
                topics = consumer.list_topics(timeout=1.0).topics
            except confluent_kafka.KafkaException:
                pass  # the broker is unreachable: the kafka check says so
            else:
                self._watch.set_topic_partitions(
                    sum(
                        len(metadata.partitions)
                        for name, metadata in topics.items()
                        if name in self._options.topics and metadata.error is None
                    )
                )
        self._watch.report()

    # --- rebalance callbacks (run inside consume(), on the loop thread) -------------------------

    def _on_assign(
        self, consumer: confluent_kafka.Consumer, partitions: list[confluent_kafka.TopicPartition]
    ) -> None:
        tps = [(tp.topic, tp.partition) for tp in partitions]
        self._rebalancing = False
        self._tracker.assign(tps)
        self._watch.assign(tps)
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
        self._rebalancing = True
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
        self._rebalancing = True
        self._forget(tps)
        logger.warning(
            "lost %s", tps, extra={"action": "partitions_lost", "group": self._options.group_id}
        )

    def _forget(self, tps: list[TopicPartition]) -> None:
        # Work still running for these partitions finishes, but its offsets no longer count;
        # retries waiting for them are dropped: the next owner starts them afresh.
        self._tracker.revoke(tps)
        self._watch.revoke(tps)
        self._paused.difference_update(tps)
        self._waiting.drop(set(tps))
        IN_FLIGHT.labels(self._options.group_id).set(self._tracker.in_flight())

    # --- shutdown -------------------------------------------------------------------------------

    def _shutdown(self, executor: ThreadPoolExecutor) -> None:
        consumer = self._consumer
        self._closing = True
        self._drain(None, self._options.shutdown_timeout_s)
        if self._tracker.in_flight():
            logger.warning(
                "shutting down with %d messages unfinished (%d waiting for a retry); they will "
                "be redelivered",
                self._tracker.in_flight(),
                len(self._waiting),
                extra={"action": "consumer_shutdown_unfinished"},
            )
        self._waiting.clear()
        self._commit(asynchronous=False)
        executor.shutdown(wait=False, cancel_futures=True)
        self._letters.close()
        if consumer is not None:
            self._finish_rebalance(consumer)
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

    def _finish_rebalance(self, consumer: confluent_kafka.Consumer) -> None:
        """Let a rebalance in progress finish before leaving the group (bounded).

        Leaving in the middle of a join wedges tansu's group for good (see the module docstring).
        Messages fetched meanwhile are not started: the next owner of their partition gets them.
        """
        if not self._rebalancing:
            return
        bound_s = min(
            self._options.shutdown_timeout_s, self._settings.kafka_session_timeout_ms / 1000
        )
        deadline = time.monotonic() + bound_s
        logger.debug("waiting for the rebalance in progress before leaving the group")
        try:
            while self._rebalancing and time.monotonic() < deadline:
                consumer.poll(0.1)
        except (RuntimeError, confluent_kafka.KafkaException) as exc:
            logger.warning(
                "polling before leaving failed: %s", exc, extra={"action": "consumer_close_failed"}
            )
