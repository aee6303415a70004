"""Shipping a job's log lines to the `job_logs` topic while the job runs.

Lines are batched (by count, bytes, and at most ``interval_s`` of waiting) so a chatty container
does not send one message per line, and a quiet one still gets each line out within the interval.
``close`` sends what is left and the end marker, and waits until the broker has every message.
"""

from __future__ import annotations

import threading
from uuid import UUID

from chronoverse.errors import PublishError
from chronoverse.kafka.producer import StreamingProducer
from chronoverse.logs import LogLine, encode_end, encode_lines_bounded


class LogShipper:
    def __init__(
        self,
        producer: StreamingProducer,
        topic: str,
        job_id: UUID,
        *,
        interval_s: float = 0.05,
        max_batch_lines: int = 1000,
        max_batch_chars: int = 512 * 1024,
    ) -> None:
        self._producer = producer
        self._topic = topic
        self._job_id = job_id
        self._key = str(job_id)
        self._interval_s = interval_s
        self._max_lines = max_batch_lines
        self._max_chars = max_batch_chars
        self._lock = threading.Condition()
        self._buffer: list[LogLine] = []
        self._buffered_chars = 0
        self._in_flight = 0
        self._errors: list[str] = []
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
            batch = self._take() if full else []
        self._send(batch)

    def close(self, last_seq: int, *, timeout_s: float = 30.0) -> None:
        """Send the rest and the end marker; raise PublishError unless the broker took them all."""
        self._closing.set()
        self._flusher.join()
        with self._lock:
            batch = self._take()
            self._in_flight += 1  # the end marker
        self._send([*batch, encode_end(self._job_id, last_seq)])
        with self._lock:
            if not self._lock.wait_for(lambda: self._in_flight == 0, timeout=timeout_s):
                raise PublishError(
                    self._topic, self._key, f"{self._in_flight} log batches unconfirmed"
                )
            if self._errors:
                raise PublishError(self._topic, self._key, self._errors[0])

    def _tick(self) -> None:
        while not self._closing.wait(self._interval_s):
            with self._lock:
                batch = self._take()
            self._send(batch)

    def _take(self) -> list[bytes]:
        """Encode and empty the buffer, counting it in flight (called with the lock held)."""
        if not self._buffer:
            return []
        values = encode_lines_bounded(self._job_id, self._buffer)
        self._buffer = []
        self._buffered_chars = 0
        self._in_flight += len(values)
        return values

    def _send(self, values: list[bytes]) -> None:
        # Never called with the lock held: a full local queue blocks here until the report
        # thread, which needs the lock in _delivered, drains it.
        for value in values:
            self._producer.send(self._topic, self._key, value, self._delivered)

    def _delivered(self, error: str | None) -> None:
        with self._lock:
            self._in_flight -= 1
            if error is not None:
                self._errors.append(error)
            self._lock.notify_all()
