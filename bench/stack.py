"""The real service processes a benchmark or an end-to-end test runs against.

A :class:`Stack` is a set of service processes that share one environment: a database, topics
(by prefix), an installation name and loopback ports of their own. The bench and tests/e2e both
use it; tests/e2e/stack.py adds what only tests need.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
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
STOP_TIMEOUT_S = 30.0

_ports_lock = threading.Lock()
_ports_handed_out: set[int] = set()


def free_port() -> int:
    """A loopback port that is free now and that this process has not handed out before.

    A service binds its port only once it starts, so until then the OS may offer the same free
    port again: remembering every port handed out keeps two picks in one process apart.
    """
    with _ports_lock:
        while True:
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                port = int(sock.getsockname()[1])
            if port not in _ports_handed_out:
                _ports_handed_out.add(port)
                return port


def is_ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
            return bool(response.status == 200)
    except urllib.error.HTTPError as exc:
        exc.close()  # its response (a 503), now rather than when collected
        return False
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


class StackError(BenchError):
    """A service process exited, or did not become ready in time."""


@dataclass(frozen=True, kw_only=True)
class Service:
    """One process to start; ``service`` names its console script, ``chronoverse-<service>``."""

    name: str
    service: str
    env: Mapping[str, str] = field(default_factory=dict)


class Stack:
    """Service processes sharing one environment; stopped (SIGTERM, then SIGKILL) at the end.

    ``label`` starts the topic prefix and the installation name; ``overrides`` are settings
    (``CHRONOVERSE_…``) of every process.
    """

    def __init__(
        self,
        environ: Mapping[str, str],
        database_url: str,
        log_dir: Path,
        *,
        label: str = "stack",
        **overrides: str,
    ) -> None:
        suffix = uuid.uuid4().hex[:8]
        self.topic_prefix = f"{label}{suffix}."
        self.env = {
            # A test or bench stack registers many users from one address.
            "CHRONOVERSE_REGISTRATION": "open",
            "CHRONOVERSE_AUTH_RATE_LIMIT_PER_IP": "100000/minute",
            # The bench and the e2e tests run one user's 10,000s of jobs and many manual runs
            # (the per-user quotas have their own tests; the in-flight cap stays at its default).
            "CHRONOVERSE_MAX_ACTIVE_JOBS_PER_USER": "1000000",
            "CHRONOVERSE_MAX_WORKFLOWS_PER_USER": "1000000",
            "CHRONOVERSE_MANUAL_RUNS_PER_MINUTE": "100000",
            **environ,
            "CHRONOVERSE_DATABASE_URL": database_url,
            "CHRONOVERSE_KAFKA_TOPIC_PREFIX": self.topic_prefix,
            "CHRONOVERSE_INSTALLATION": f"{label}-{suffix}",
            "CHRONOVERSE_LOG_FORMAT": "json",
            "CHRONOVERSE_LOG_LEVEL": "DEBUG",
            **overrides,
        }
        self.log_dir = log_dir
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.health_ports: dict[str, int] = {}
        self.http_port = free_port()
        self.grpc_port = free_port()
        self.api = f"http://127.0.0.1:{self.http_port}"

    def __enter__(self) -> Stack:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop_all()

    def start(self, name: str, service: str, **env: str) -> subprocess.Popen[bytes]:
        """Start one process and wait until it answers /readyz."""
        self.start_all([Service(name=name, service=service, env=env)])
        return self.processes[name]

    def spawn(self, name: str, service: str, **env: str) -> subprocess.Popen[bytes]:
        """Start one process and return at once, without waiting for /readyz (a supervisor
        restarting a process, or a test timing how long it takes to be ready)."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._spawn(Service(name=name, service=service, env=env))
        return self.processes[name]

    def start_all(self, services: Sequence[Service]) -> None:
        """Start every process at once, then wait until each answers /readyz."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for spec in services:
            self._spawn(spec)
        deadline = time.monotonic() + READY_TIMEOUT_S
        for spec in services:
            process, port = self.processes[spec.name], self.health_ports[spec.name]
            while not is_ready(port):
                if process.poll() is not None:
                    raise StackError(
                        f"{spec.name} exited with {process.returncode}; see {self.log_dir}"
                    )
                if time.monotonic() > deadline:
                    raise StackError(
                        f"{spec.name} not ready after {READY_TIMEOUT_S:.0f}s; see {self.log_dir}"
                    )
                time.sleep(0.1)

    def _spawn(self, spec: Service) -> None:
        port = free_port()  # the health listener: /readyz with its checks, /metrics
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
                self.command(spec.name, spec.service, env),
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.health_ports[spec.name] = port

    def command(self, name: str, service: str, env: Mapping[str, str]) -> list[str]:
        """The argv that runs ``service``; subclasses run it elsewhere (in a container)."""
        return [str(BIN / f"chronoverse-{service}")]

    def pids(self) -> dict[str, int]:
        return {name: process.pid for name, process in self.processes.items()}

    def check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise StackError(f"{name} exited with {process.returncode}; see {self.log_dir}")

    def kill(self, name: str) -> None:
        """SIGKILL: no cleanup, no commit, no leaving the consumer group."""
        process = self.processes.pop(name)
        process.send_signal(signal.SIGKILL)
        process.wait()

    def stop_all(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes.clear()

    def metrics(self, name: str) -> str:
        """The Prometheus exposition text of one process."""
        port = self.health_ports[name]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            return str(response.read().decode())

    def logs(self) -> str:
        """The tail of each process's log, to print when a test fails."""
        return "\n".join(
            f"--- {p.name}\n{p.read_text()[-4000:]}" for p in sorted(self.log_dir.glob("*.log"))
        )
