"""The mixed load the faults hit: HEARTBEAT checks, liveness HEARTBEATs and CONTAINER jobs.

Interval-1 workflows of each kind keep the scheduler busy; a thread keeps asking for manual runs
over the API (CONTAINER jobs that print numbered lines with sleeps, and HEARTBEAT checks of a
loopback endpoint the test serves), and remembers every job the API answered 201 for.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import httpx

from tests.e2e.stack import ApiUser

BUSYBOX = "local/busybox:latest"
LINES = 40  # lines a load container prints, one every 0.1 s
LONG_LINES = 150  # a long job: running long enough to be hit by a fault
INTERVAL_CONTAINERS = 2
INTERVAL_CHECKS = 5  # HEARTBEAT endpoint checks every minute
INTERVAL_LIVENESS = 20
CONTAINER_EVERY_S = 1.5
CHECK_EVERY_S = 0.5
FAILURE_LIMIT = 100  # the most allowed: a fault's failures must not terminate the load


def numbered_lines(count: int) -> list[str]:
    """A busybox command printing ``line <n> <hostname>`` for n = 1..count, 0.1 s apart."""
    script = f'h=$(hostname); for i in $(seq 1 {count}); do echo "line $i $h"; sleep 0.1; done'
    return ["sh", "-c", script]


@dataclass(kw_only=True)
class Workflows:
    manual_container: str
    long_container: str
    manual_check: str
    interval: list[str] = field(default_factory=list)
    expected_lines: dict[UUID, int] = field(default_factory=dict)  # CONTAINER workflow -> lines

    @property
    def container_ids(self) -> list[str]:
        return [str(w) for w in self.expected_lines]


class Load:
    def __init__(self, api: str, endpoint_url: str) -> None:
        self.user = ApiUser(api)
        self.user.http.timeout = httpx.Timeout(5.0)  # a fault must not stall the load for long
        self._endpoint_url = endpoint_url
        self.committed: list[UUID] = []
        self.refused: Counter[str] = Counter()  # answers other than 201, and transport errors
        self._lock = threading.Lock()
        self._running = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._trigger, name="chaos-load", daemon=True)
        self.workflows: Workflows | None = None

    # --- workflows --------------------------------------------------------------------------------

    def _container(self, name: str, lines: int, interval: int) -> str:
        workflow = self.user.create(
            name=name,
            kind="CONTAINER",
            interval=interval,
            max_consecutive_job_failures_allowed=FAILURE_LIMIT,
            payload={
                "image": BUSYBOX,
                "command": numbered_lines(lines),
                "timeout_seconds": 120,
                "pull_policy": "never",  # no registry here: never reach for one
            },
        )
        assert self.workflows is not None
        self.workflows.expected_lines[UUID(workflow["id"])] = lines
        return str(workflow["id"])

    def _check(self, name: str, interval: int, *, endpoint: bool) -> str:
        payload: dict[str, Any] = {"endpoint": self._endpoint_url} if endpoint else {}
        workflow = self.user.create(
            name=name,
            kind="HEARTBEAT",
            interval=interval,
            max_consecutive_job_failures_allowed=FAILURE_LIMIT,
            payload=payload,
        )
        return str(workflow["id"])

    def create_workflows(self) -> Workflows:
        self.workflows = Workflows(manual_container="", long_container="", manual_check="")
        week = 10080
        self.workflows.manual_container = self._container("manual-box", LINES, week)
        self.workflows.long_container = self._container("long-box", LONG_LINES, week)
        self.workflows.manual_check = self._check("manual-check", week, endpoint=True)
        for i in range(INTERVAL_CONTAINERS):
            self.workflows.interval.append(self._container(f"box-{i}", LINES, 1))
        for i in range(INTERVAL_CHECKS):
            self.workflows.interval.append(self._check(f"check-{i}", 1, endpoint=True))
        for i in range(INTERVAL_LIVENESS):
            self.workflows.interval.append(self._check(f"alive-{i}", 1, endpoint=False))
        return self.workflows

    def new_container_workflow(self) -> str:
        """A CONTAINER workflow created now (to be built by the workflow worker)."""
        return self._container(f"late-box-{time.monotonic_ns()}", LINES, 10080)

    # --- manual runs ------------------------------------------------------------------------------

    def trigger(self, workflow_id: str) -> UUID | None:
        try:
            response = self.user.trigger(workflow_id)
        except httpx.HTTPError as exc:
            with self._lock:
                self.refused[type(exc).__name__] += 1
            return None
        if response.status_code != 201:
            with self._lock:
                self.refused[str(response.status_code)] += 1
            return None
        job_id = UUID(response.json()["id"])
        with self._lock:
            self.committed.append(job_id)
        return job_id

    def committed_ids(self) -> list[UUID]:
        with self._lock:
            return list(self.committed)

    def start(self) -> None:
        self._running.set()
        self._thread.start()

    def pause(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    def stop(self) -> None:
        self._stop.set()
        self._running.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def _trigger(self) -> None:
        assert self.workflows is not None
        next_container = next_check = time.monotonic()
        while not self._stop.is_set():
            self._running.wait()
            now = time.monotonic()
            if now >= next_container:
                self.trigger(self.workflows.manual_container)
                next_container = now + CONTAINER_EVERY_S
            if now >= next_check:
                self.trigger(self.workflows.manual_check)
                next_check = now + CHECK_EVERY_S
            self._stop.wait(0.05)

    def close(self) -> None:
        self.stop()
        self.user.close()
