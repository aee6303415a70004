"""Measuring: order statistics, waiting for an end state, and sampling processes' memory."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TypeVar

from bench.environment import BenchError

T = TypeVar("T")


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100), interpolated linearly between the closest ranks."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


def wait_for(
    predicate: Callable[[], T | None],
    *,
    timeout_s: float,
    interval_s: float,
    what: str,
) -> T:
    """Poll until ``predicate()`` returns something truthy; return it, or raise BenchError."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(interval_s)


def rss_mb(pid: int) -> float | None:
    """Resident set size of a process in MiB (VmRSS), or None when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        return None
    return None


def rss_now(pids: Mapping[str, int]) -> dict[str, float]:
    """One RSS reading of every named process that is still alive."""
    readings = {name: rss_mb(pid) for name, pid in pids.items()}
    return {name: value for name, value in readings.items() if value is not None}


class RssSampler:
    """Samples the RSS of some processes on a thread; ``peak`` is each one's largest reading."""

    def __init__(self, pids: Mapping[str, int], *, interval_s: float = 0.2) -> None:
        self._pids = dict(pids)
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self.peak: dict[str, float] = {}

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self._sample()

    def _sample(self) -> None:
        for name, value in rss_now(self._pids).items():
            self.peak[name] = max(value, self.peak.get(name, 0.0))
