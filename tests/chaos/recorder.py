"""Records when each job container ran, from the chaos dockerd's `start` and `die` events.

Job containers are removed once they end, so their times cannot be inspected afterwards: a thread
follows ``docker events --filter label=chronoverse.job_id`` for the whole session, reconnecting
(and replaying from the last event seen) when the stream breaks, e.g. across a daemon restart.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import threading
import time
from typing import Any
from uuid import UUID

from chronoverse.definitions import LABEL_JOB
from tests.chaos.checks import ContainerLife
from tests.chaos.infra import Dockerd


class ContainerRecorder:
    def __init__(self, dockerd: Dockerd) -> None:
        self._dockerd = dockerd
        self._lock = threading.Lock()
        self._started: dict[str, tuple[UUID, int]] = {}  # container id -> (job, start ns)
        self._died: dict[str, int] = {}
        self._last_s = int(time.time()) - 1
        self._stop = threading.Event()
        self._process: subprocess.Popen[str] | None = None
        self._thread = threading.Thread(target=self._follow, name="docker-events", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        process = self._process
        if process is not None and process.poll() is None:
            process.terminate()  # unblocks the thread's read
        self._thread.join(timeout=10)

    def _follow(self) -> None:
        # The docker CLI rather than the SDK: a stream the daemon ends leaves the SDK's socket
        # open, and this one ends with every daemon restart.
        while not self._stop.is_set():
            argv = [
                "docker", "--host", self._dockerd.host, "events", "--format", "{{json .}}",
                "--filter", "type=container", "--filter", f"label={LABEL_JOB}",
                "--since", str(self._last_s),
            ]  # fmt: skip
            with subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
            ) as process:
                self._process = process
                assert process.stdout is not None
                for line in process.stdout:
                    with contextlib.suppress(ValueError):
                        self._record(json.loads(line))
                    if self._stop.is_set():
                        process.terminate()
                        break
            self._stop.wait(0.2)

    def _record(self, event: dict[str, Any]) -> None:
        action = event.get("Action") or event.get("status")
        container_id = str(event.get("id", ""))
        attributes = event.get("Actor", {}).get("Attributes", {})
        at_ns = int(event.get("timeNano", 0))
        self._last_s = max(self._last_s, at_ns // 1_000_000_000)
        try:
            job_id = UUID(attributes[LABEL_JOB])
        except (KeyError, ValueError):
            return
        with self._lock:
            if action == "start":
                self._started.setdefault(container_id, (job_id, at_ns))
            elif action == "die":
                self._died.setdefault(container_id, at_ns)

    def daemon_stopped(self, at_ns: int) -> None:
        """The daemon stopped (every container with it): a run whose `die` event was lost in
        the shutdown ended then at the latest."""
        with self._lock:
            for container_id in self._started:
                self._died.setdefault(container_id, at_ns)

    def lives(self) -> list[ContainerLife]:
        with self._lock:
            return [
                ContainerLife(
                    container_id=container_id,
                    job_id=job_id,
                    started_ns=started,
                    died_ns=self._died.get(container_id),
                )
                for container_id, (job_id, started) in self._started.items()
            ]

    def final_container(self, job_id: UUID) -> str | None:
        """The container that started last for ``job_id`` (its final attempt's)."""
        runs = [life for life in self.lives() if life.job_id == job_id]
        return max(runs, key=lambda life: life.started_ns).container_id if runs else None

    def labelled(self) -> dict[str, UUID]:
        """Every container (running or not) with a job label now: container id -> job id."""
        client = self._dockerd.client(timeout_s=10)
        try:
            found = {}
            for container in client.containers.list(all=True, filters={"label": LABEL_JOB}):
                with contextlib.suppress(KeyError, ValueError):
                    found[str(container.id)] = UUID(container.labels[LABEL_JOB])
            return found
        finally:
            client.close()
