"""The real service processes a scenario runs against: its own database, topics and ports."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from bench.environment import BenchError

BIN = Path(sys.executable).parent
READY_TIMEOUT_S = 90.0
FETCH_WAIT_MAX_MS = "20"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def is_ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


@dataclass(frozen=True, kw_only=True)
class Service:
    """One process to start; ``service`` names its console script, ``chronoverse-<service>``."""

    name: str
    service: str
    env: Mapping[str, str] = field(default_factory=dict)


class Stack:
    """Service processes sharing one environment; stopped (SIGTERM, then SIGKILL) on exit."""

    def __init__(
        self,
        environ: Mapping[str, str],
        *,
        database_url: str,
        topic_prefix: str,
        log_dir: Path,
        overrides: Mapping[str, str] | None = None,
    ) -> None:
        self.env = {
            **environ,
            "CHRONOVERSE_DATABASE_URL": database_url,
            "CHRONOVERSE_KAFKA_TOPIC_PREFIX": topic_prefix,
            "CHRONOVERSE_INSTALLATION": f"bench-{uuid.uuid4().hex[:8]}",
            "CHRONOVERSE_LOG_FORMAT": "json",
            "CHRONOVERSE_LOG_LEVEL": "INFO",
            # tansu holds a fetch for its whole wait even when messages arrive (Apache Kafka
            # answers at once): a short wait keeps the broker from adding its latency.
            "CHRONOVERSE_KAFKA_FETCH_WAIT_MAX_MS": FETCH_WAIT_MAX_MS,
            **(overrides or {}),
        }
        self.log_dir = log_dir
        self._ports: set[int] = set()
        self.http_port = self._free_port()
        self.grpc_port = self._free_port()
        self.api = f"http://127.0.0.1:{self.http_port}"
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.services: dict[str, str] = {}
        self.health_ports: dict[str, int] = {}

    def __enter__(self) -> Stack:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _free_port(self) -> int:
        """A free port this stack has not handed out yet (ports are bound only when the
        services start, so the OS may offer the same one twice)."""
        while True:
            port = free_port()
            if port not in self._ports:
                self._ports.add(port)
                return port

    def start(self, services: Sequence[Service]) -> None:
        """Start every service at once, then wait until each answers /readyz."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for spec in services:
            port = self.http_port if spec.service == "server" else self._free_port()
            env = {
                **self.env,
                "CHRONOVERSE_HEALTH_PORT": str(port),
                "CHRONOVERSE_HTTP_PORT": str(self.http_port),
                "CHRONOVERSE_GRPC_PORT": str(self.grpc_port),
                "CHRONOVERSE_WORKER_ID": spec.name,
                **spec.env,
            }
            with open(self.log_dir / f"{spec.name}.log", "ab") as log:
                self.processes[spec.name] = subprocess.Popen(
                    [str(BIN / f"chronoverse-{spec.service}")],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            self.services[spec.name] = spec.service
            self.health_ports[spec.name] = port
        deadline = time.monotonic() + READY_TIMEOUT_S
        for name, port in self.health_ports.items():
            process = self.processes[name]
            while not is_ready(port):
                if process.poll() is not None:
                    raise BenchError(f"{name} exited with {process.returncode}; see {self.log_dir}")
                if time.monotonic() > deadline:
                    raise BenchError(
                        f"{name} not ready after {READY_TIMEOUT_S}s; see {self.log_dir}"
                    )
                time.sleep(0.1)

    def pids(self) -> dict[str, int]:
        return {name: process.pid for name, process in self.processes.items()}

    def check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise BenchError(f"{name} exited with {process.returncode}; see {self.log_dir}")

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes.clear()
