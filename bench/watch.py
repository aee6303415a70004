"""Seeing jobs finish: one thread polls Postgres for every job a client waits on."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from types import TracebackType

from bench.database import QUERIES, connect
from bench.environment import BenchError

FINAL = frozenset({"COMPLETED", "FAILED", "CANCELED"})


@dataclass(frozen=True, kw_only=True)
class Finished:
    status: str
    error: str | None
    seen_at: float  # time.perf_counter() when the poll saw the final state


class _Waiter:
    def __init__(self) -> None:
        self.event = threading.Event()
        self.result: Finished | None = None


class FinishWatcher:
    """Polls the jobs table every ``interval_s`` (one query for all watched jobs)."""

    def __init__(self, database_url: str, *, interval_s: float = 0.005) -> None:
        self._database_url = database_url
        self._interval_s = interval_s
        self._lock = threading.Lock()
        self._waiters: dict[str, _Waiter] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="finish-watcher", daemon=True)

    def __enter__(self) -> FinishWatcher:
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

    def wait(self, job_id: str, *, timeout_s: float = 120) -> Finished:
        waiter = _Waiter()
        with self._lock:
            self._waiters[job_id] = waiter
        if not waiter.event.wait(timeout_s) or waiter.result is None:
            raise BenchError(f"job {job_id} did not finish within {timeout_s:.0f}s")
        return waiter.result

    def _run(self) -> None:
        with connect(self._database_url) as conn:
            while not self._stop.wait(self._interval_s):
                with self._lock:
                    ids = list(self._waiters)
                if not ids:
                    continue
                rows = conn.execute(QUERIES.job_states, {"ids": ids}).fetchall()
                seen_at = time.perf_counter()
                for row in rows:
                    if row["status"] in FINAL:
                        with self._lock:
                            waiter = self._waiters.pop(str(row["id"]))
                        waiter.result = Finished(
                            status=row["status"], error=row["error"], seen_at=seen_at
                        )
                        waiter.event.set()
