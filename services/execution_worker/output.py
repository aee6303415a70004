"""One attempt's output on its way to `job_logs`: split into numbered lines, capped, shipped.

The same rules number and cap a running container's output (read from its attach stream) and a
dead attempt's output (read back from Docker's log by :mod:`services.execution_worker.leftovers`),
so the lines the second reading ships carry the seqs the first one gave them.
"""

from __future__ import annotations

from datetime import datetime

from chronoverse.domain import LogStream
from chronoverse.logs import LineSplitter
from services.execution_worker.logship import LogShipper


class Output:
    """Feeds output chunks to a splitter and ships the lines, up to ``max_chars`` characters;
    what comes after is counted, and :meth:`finish` says how much was dropped."""

    def __init__(self, splitter: LineSplitter, shipper: LogShipper, *, max_chars: int) -> None:
        self._splitter = splitter
        self._shipper = shipper
        self._max_chars = max_chars
        self._shipped = 0
        self._truncated = 0

    def feed(self, stream: LogStream, chunk: bytes | None, ts: datetime) -> None:
        if not chunk:
            return
        if self._shipped >= self._max_chars:
            self._truncated += len(chunk)
            return
        lines = self._splitter.feed(stream, chunk, ts)
        self._shipped += sum(len(line.line) for line in lines)
        self._shipper.add(lines)

    def finish(self, ts: datetime) -> None:
        """After the last chunk: when output was dropped, a last line says how much."""
        if not self._truncated:
            return
        note = f"[chronoverse] output truncated: {self._truncated} more bytes were not kept\n"
        self._shipper.add(self._splitter.flush(ts))
        self._shipper.add(self._splitter.feed(LogStream.STDERR, note.encode(), ts))
