"""Shipping one attempt's log lines to the `job_logs` topic while the job runs.

Lines are batched (by count, bytes, and at most ``interval_s`` of waiting) so a chatty container
does not send one message per line, and a quiet one still gets each line out within the interval.
Every message carries the attempt, so a retried job's lines are stored as the attempt that
printed them.

A batch the broker refused (an outage longer than the producer's own retries, a message it found
too large) is kept. ``close`` waits for every batch, sends the refused ones again (a bounded
number of rounds, in smaller messages each round, within its timeout), and then sends the end
marker: with ``incomplete`` set when lines were still lost, so readers say the log has a gap.
"""

from __future__ import annotations

import logging
import threading
import time
from uuid import UUID

from confluent_kafka import KafkaException

from chronoverse.errors import PublishError
from chronoverse.kafka.producer import StreamingProducer
from chronoverse.logs import MAX_LOG_MESSAGE_BYTES, LogLine, encode_batches, encode_end

logger = logging.getLogger(__name__)

RESEND_ROUNDS = 3
RESEND_BACKOFF_S = 0.5


class LogShipper:
    def __init__(
        self,
        producer: StreamingProducer,
        topic: str,
        job_id: UUID,
        *,
        attempt: int,
        interval_s: float = 0.05,
        max_batch_lines: int = 1000,
        max_batch_chars: int = 512 * 1024,
        max_message_bytes: int = MAX_LOG_MESSAGE_BYTES,
        resend_rounds: int = RESEND_ROUNDS,
    ) -> None:
        self._producer = producer
        self._topic = topic
        self._job_id = job_id
        self._attempt = attempt
        self._key = str(job_id)
        self._interval_s = interval_s
        self._max_lines = max_batch_lines
        self._max_chars = max_batch_chars
        self._max_bytes = max_message_bytes
        self._resend_rounds = resend_rounds
        self._lock = threading.Condition()
        self._sending = threading.Lock()  # batches leave in the order they were taken
        self._buffer: list[LogLine] = []
        self._buffered_chars = 0
        self._in_flight = 0
        self._refused: list[LogLine] = []  # lines of batches the broker refused, to send again
        self._first_error: str | None = None
        self._end_error: str | None = None
        self._closing = threading.Event()
        self._flusher = threading.Thread(target=self._tick, name=f"logs-{job_id}", daemon=True)
        self._flusher.start()

    def add(self, lines: list[LogLine]) -> None:
        if not lines:
            return
        with self._lock:
            self._buffer.extend(lines)
            self._buffered_chars += sum(len(line.line) for line in lines)
            full = len(self._buffer) >= self._max_lines or self._buffered_chars >= self._max_chars
        if full:
            self._flush()

    def close(self, last_seq: int, *, timeout_s: float = 30.0) -> None:
        """Send the rest, the refused batches again, then the end marker; raise PublishError
        unless the broker took every line and the end marker.

        When lines are still lost after the last round, the end marker says ``incomplete`` (if
        the broker takes it) and the error names how many lines were lost.
        """
        deadline = time.monotonic() + timeout_s
        self._closing.set()
        self._flusher.join()
        self._flush()
        lost = self._settle(deadline)
        if lost is None:
            with self._lock:
                unconfirmed = self._in_flight
            raise PublishError(self._topic, self._key, f"{unconfirmed} log batches unconfirmed")
        self._send_end(last_seq, incomplete=bool(lost), deadline=deadline)
        if lost:
            raise PublishError(
                self._topic,
                self._key,
                f"{len(lost)} log lines of attempt {self._attempt} lost: {self._first_error}",
            )
        if self._end_error is not None:
            raise PublishError(self._topic, self._key, self._end_error)

    def _settle(self, deadline: float) -> list[LogLine] | None:
        """Wait for every batch, sending refused ones again; the lines still lost after the last
        round, or None when some batch is still unconfirmed at the deadline."""
        rounds = 0
        while True:
            with self._lock:
                if not self._lock.wait_for(
                    lambda: self._in_flight == 0, timeout=max(0.0, deadline - time.monotonic())
                ):
                    return None
                refused, self._refused = self._refused, []
            backoff = RESEND_BACKOFF_S * 2**rounds
            if not refused or rounds >= self._resend_rounds:
                return refused
            if time.monotonic() + backoff >= deadline:
                return refused
            time.sleep(backoff)
            rounds += 1
            logger.warning(
                "sending %d refused log lines of job %s again (round %d)",
                len(refused),
                self._job_id,
                rounds,
                extra={"action": "log_lines_resent", "job_id": str(self._job_id)},
            )
            # Smaller messages each round: a broker that refused a message as too large may take
            # its halves. The lines were refused in any order; they are sent again in order.
            refused.sort(key=lambda line: line.seq)
            with self._lock:
                batches = self._encode(refused, max(1, self._max_bytes >> rounds))
            self._send(batches)

    def _send_end(self, last_seq: int, *, incomplete: bool, deadline: float) -> None:
        value = encode_end(self._job_id, last_seq, attempt=self._attempt, incomplete=incomplete)
        delivered = threading.Event()

        def on_delivery(error: str | None) -> None:
            self._end_error = error
            delivered.set()

        for round_ in range(self._resend_rounds + 1):
            if round_:
                backoff = RESEND_BACKOFF_S * 2 ** (round_ - 1)
                if time.monotonic() + backoff >= deadline:
                    return
                time.sleep(backoff)
            delivered.clear()
            try:
                self._producer.send(self._topic, self._key, value, on_delivery)
            except (KafkaException, PublishError) as exc:
                self._end_error = str(exc)
                continue
            if not delivered.wait(max(0.0, deadline - time.monotonic())):
                self._end_error = "the end marker was not confirmed in time"
                return
            if self._end_error is None:
                return

    def _tick(self) -> None:
        while not self._closing.wait(self._interval_s):
            self._flush()

    def _flush(self) -> None:
        """Send what is buffered. Taking and sending are one step for the reader and the ticker:
        otherwise one could send a later batch before the other sent an earlier one, and every
        live viewer would see a gap and read Postgres for it."""
        with self._sending:
            with self._lock:
                batch = self._take()
            self._send(batch)

    def _take(self) -> list[tuple[list[LogLine], bytes]]:
        """Encode and empty the buffer, counting it in flight (called with the lock held)."""
        if not self._buffer:
            return []
        batches = self._encode(self._buffer, self._max_bytes)
        self._buffer = []
        self._buffered_chars = 0
        return batches

    def _encode(self, lines: list[LogLine], max_bytes: int) -> list[tuple[list[LogLine], bytes]]:
        """The messages of ``lines``, counted in flight (called with the lock held)."""
        batches = encode_batches(self._job_id, lines, attempt=self._attempt, max_bytes=max_bytes)
        self._in_flight += len(batches)
        return batches

    def _send(self, batches: list[tuple[list[LogLine], bytes]]) -> None:
        # Never called with the lock held: a full local queue blocks here until the report
        # thread, which needs the lock in _delivered, drains it.
        for lines, value in batches:

            def on_delivery(error: str | None, lines: list[LogLine] = lines) -> None:
                self._delivered(lines, error)

            try:
                self._producer.send(self._topic, self._key, value, on_delivery)
            except (KafkaException, PublishError) as exc:
                # Refused before it left (e.g. larger than the producer's message.max.bytes).
                self._delivered(lines, str(exc))

    def _delivered(self, lines: list[LogLine], error: str | None) -> None:
        with self._lock:
            self._in_flight -= 1
            if error is not None:
                self._refused.extend(lines)
                self._first_error = self._first_error or error
            self._lock.notify_all()
