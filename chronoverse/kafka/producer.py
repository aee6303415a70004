"""A producer that confirms delivery: Postgres commits first, then publishing must be known to
succeed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import confluent_kafka

from chronoverse.errors import PublishError
from chronoverse.kafka.config import producer_config
from chronoverse.settings import KafkaSettings

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class OutgoingMessage:
    topic: str
    key: str
    value: bytes


class Producer:
    def __init__(
        self, settings: KafkaSettings, *, client_id: str, delivery_timeout_s: float = 30.0
    ) -> None:
        self._config = producer_config(settings, client_id=client_id)
        self._config["message.timeout.ms"] = int(delivery_timeout_s * 1000)
        self._config["error_cb"] = self._on_error
        self._delivery_timeout_s = delivery_timeout_s
        self._fatal = False
        self._producer = self._create()

    def reset(self) -> None:
        """Start a new librdkafka instance: fresh metadata and producer id (after an outage).

        Whatever the old instance still holds is abandoned; callers send it again from Postgres.
        """
        self._producer = self._create()
        self._fatal = False

    def _create(self) -> confluent_kafka.Producer:
        return confluent_kafka.Producer(self._config, logger=logging.getLogger("kafka"))

    def _on_error(self, error: confluent_kafka.KafkaError) -> None:
        if error.fatal():
            # E.g. a broker that lost its data no longer knows our idempotent producer id. The
            # instance cannot be used again; the next publish starts a new one.
            self._fatal = True
            logger.error(
                "producer hit a fatal error; it will be re-created: %s",
                error,
                extra={"action": "producer_fatal"},
            )

    def publish_all(
        self, messages: Iterable[OutgoingMessage], *, timeout_s: float | None = None
    ) -> None:
        """Send every message and wait until the broker acknowledged each; raise on any failure."""
        if self._fatal:
            self.reset()  # the old instance is unusable
        failures: list[PublishError] = []
        pending = 0

        def on_delivery(error: Any, message: confluent_kafka.Message) -> None:
            nonlocal pending
            pending -= 1
            if error is not None:
                if error.fatal():
                    self._fatal = True
                key = message.key()
                failures.append(
                    PublishError(message.topic() or "?", key.decode() if key else None, str(error))
                )

        try:
            for message in messages:
                self._produce(message, on_delivery)
                pending += 1
            if timeout_s is None:
                timeout_s = self._delivery_timeout_s + 5  # librdkafka reports a failure by then
            deadline = time.monotonic() + timeout_s
            while pending > 0 and time.monotonic() < deadline:
                self._producer.poll(min(0.1, max(0.0, deadline - time.monotonic())))
        except confluent_kafka.KafkaException as exc:
            error = exc.args[0] if exc.args else None
            if error is not None and error.fatal():
                self._fatal = True
            raise PublishError("(several)", None, str(exc)) from exc
        if failures:
            raise failures[0]
        if pending > 0:
            raise PublishError("(several)", None, f"{pending} messages unconfirmed in time")

    def _produce(self, message: OutgoingMessage, on_delivery: Any) -> None:
        while True:
            try:
                self._producer.produce(
                    message.topic, key=message.key, value=message.value, on_delivery=on_delivery
                )
                return
            except BufferError:
                # The local queue is full: serve delivery reports to make room, then retry.
                self._producer.poll(0.05)

    def close(self, timeout_s: float = 10.0) -> None:
        remaining = self._producer.flush(timeout_s)
        if remaining:
            logger.warning(
                "producer closed with %d undelivered messages",
                remaining,
                extra={"action": "producer_close_undelivered"},
            )


# Delivery failures that say the instance itself went stale rather than that one message was
# refused: a broker that lost its data answers an idempotent producer "unknown producer id"
# forever (librdkafka bumps its epoch and retries until the message times out), and a re-created
# topic needs fresh metadata.
_STALE = frozenset(
    {
        # A delivery report after a fatal error carries _FATAL without error.fatal() being set:
        # the chaos suite saw an instance fail every later message this way, never replaced.
        confluent_kafka.KafkaError._FATAL,
        confluent_kafka.KafkaError._MSG_TIMED_OUT,
        confluent_kafka.KafkaError.UNKNOWN_PRODUCER_ID,
        confluent_kafka.KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER,
        confluent_kafka.KafkaError.UNKNOWN_TOPIC_OR_PART,
        confluent_kafka.KafkaError._UNKNOWN_PARTITION,
        confluent_kafka.KafkaError._UNKNOWN_TOPIC,
    }
)


class StreamingProducer:
    """One producer shared by many threads that send without waiting; a thread serves reports.

    Each ``send`` takes its own delivery callback, called from the background thread. Used for
    log lines, where every job streams batches while it runs and waits only at its end.

    Like :class:`Producer`, it starts a new librdkafka instance after a fatal error, and also
    after a delivery failed in a way that says the instance went stale (see ``_STALE``), so that
    one broker outage does not fail every later send until a restart. The old instance is
    retired: its messages still get their reports (a fatal one's at once, purged), and new sends
    go to the new one.
    """

    def __init__(
        self, settings: KafkaSettings, *, client_id: str, delivery_timeout_s: float = 30.0
    ) -> None:
        config = producer_config(settings, client_id=client_id)
        config["message.timeout.ms"] = int(delivery_timeout_s * 1000)
        # Senders batch their own messages (a log shipper sends a batch of lines at a time) and
        # then wait for the last one: lingering here would only add to every job's end.
        config["linger.ms"] = 0
        self._config = config
        self._lock = threading.Lock()
        self._producer = self._create()
        self._stale: str | None = None  # why the current instance must be replaced
        self._fatal = False  # and whether it can deliver nothing more
        self._retired: list[confluent_kafka.Producer] = []
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="producer-reports", daemon=True)
        self._thread.start()

    def _create(self) -> confluent_kafka.Producer:
        created: list[confluent_kafka.Producer] = []

        def on_error(error: confluent_kafka.KafkaError) -> None:
            if (error.fatal() or error.code() == confluent_kafka.KafkaError._FATAL) and created:
                # E.g. a broker that lost its data no longer knows our idempotent producer id.
                self._stale_instance(created[0], f"fatal error: {error}", fatal=True)

        config = {**self._config, "error_cb": on_error}
        created.append(confluent_kafka.Producer(config, logger=logging.getLogger("kafka")))
        return created[0]

    def _stale_instance(
        self, producer: confluent_kafka.Producer, reason: str, *, fatal: bool
    ) -> None:
        """Mark this instance for replacement by the next send, if it is still the current one
        (a retired instance's failures are old news)."""
        with self._lock:
            if producer is self._producer and self._stale is None:
                self._stale = reason
                self._fatal = fatal

    def _serve(self) -> None:
        while not self._closed.is_set():
            with self._lock:
                current, retired = self._producer, list(self._retired)
            current.poll(0.05)
            for old in retired:
                old.poll(0)
                if len(old) == 0:  # every message it held has had its report
                    with self._lock:
                        self._retired.remove(old)

    def reset(self, reason: str = "asked to") -> None:
        """Start a new librdkafka instance: fresh metadata and producer id. Messages the old one
        holds still get their reports, deliveries or failures as they come."""
        with self._lock:
            self._replace(reason, fatal=False)

    def _current(self) -> confluent_kafka.Producer:
        """The instance to send with: a new one when the current one went stale."""
        with self._lock:
            if self._stale is not None:
                self._replace(self._stale, fatal=self._fatal)
            return self._producer

    def _replace(self, reason: str, *, fatal: bool) -> None:
        """Swap in a new instance (called with the lock held)."""
        old = self._producer
        self._producer = self._create()
        self._stale = None
        self._fatal = False
        self._retired.append(old)
        logger.error(
            "streaming producer re-created (%s)", reason, extra={"action": "producer_reset"}
        )
        if fatal:
            # It can deliver nothing more: its senders learn so now, not at the message timeout.
            old.purge(in_queue=True, in_flight=True, blocking=False)

    def send(
        self, topic: str, key: str, value: bytes, on_delivery: Callable[[str | None], None]
    ) -> None:
        for _ in range(2):  # at most once more, on a new instance after a fatal error
            producer = self._current()

            def report(
                error: Any, message: confluent_kafka.Message, producer: Any = producer
            ) -> None:
                if error is not None and (error.fatal() or error.code() in _STALE):
                    fatal = error.fatal() or error.code() == confluent_kafka.KafkaError._FATAL
                    self._stale_instance(producer, f"delivery failed: {error}", fatal=fatal)
                on_delivery(str(error) if error is not None else None)

            while True:
                try:
                    producer.produce(topic, key=key, value=value, on_delivery=report)
                    return
                except BufferError:
                    time.sleep(0.01)  # the local queue is full; the report thread drains it
                except confluent_kafka.KafkaException as exc:
                    error = exc.args[0] if exc.args else None
                    if error is None or not (
                        error.fatal() or error.code() == confluent_kafka.KafkaError._FATAL
                    ):
                        raise
                    self._stale_instance(producer, f"fatal error: {error}", fatal=True)
                    break
        raise PublishError(topic, key, "the producer keeps hitting fatal errors")

    def close(self, timeout_s: float = 10.0) -> None:
        self._closed.set()
        self._thread.join()
        with self._lock:
            current, retired = self._producer, list(self._retired)
        remaining = current.flush(timeout_s)
        for old in retired:
            remaining += old.flush(0)
        if remaining:
            logger.warning(
                "producer closed with %d undelivered messages",
                remaining,
                extra={"action": "producer_close_undelivered"},
            )
