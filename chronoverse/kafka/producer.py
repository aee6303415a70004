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


class StreamingProducer:
    """One producer shared by many threads that send without waiting; a thread serves reports.

    Each ``send`` takes its own delivery callback, called from the background thread. Used for
    log lines, where every job streams batches while it runs and waits only at its end.
    """

    def __init__(
        self, settings: KafkaSettings, *, client_id: str, delivery_timeout_s: float = 30.0
    ) -> None:
        config = producer_config(settings, client_id=client_id)
        config["message.timeout.ms"] = int(delivery_timeout_s * 1000)
        # Senders batch their own messages (a log shipper sends a batch of lines at a time) and
        # then wait for the last one: lingering here would only add to every job's end.
        config["linger.ms"] = 0
        self._producer = confluent_kafka.Producer(config, logger=logging.getLogger("kafka"))
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="producer-reports", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._closed.is_set():
            self._producer.poll(0.05)

    def send(
        self, topic: str, key: str, value: bytes, on_delivery: Callable[[str | None], None]
    ) -> None:
        def report(error: Any, message: confluent_kafka.Message) -> None:
            on_delivery(str(error) if error is not None else None)

        while True:
            try:
                self._producer.produce(topic, key=key, value=value, on_delivery=report)
                return
            except BufferError:
                time.sleep(0.01)  # the local queue is full; the report thread drains it

    def close(self, timeout_s: float = 10.0) -> None:
        self._closed.set()
        self._thread.join()
        remaining = self._producer.flush(timeout_s)
        if remaining:
            logger.warning(
                "producer closed with %d undelivered messages",
                remaining,
                extra={"action": "producer_close_undelivered"},
            )
