"""Start the real service processes for a test: its own database, topics and ports."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


class Stack:
    """Service processes sharing one environment; stopped (SIGTERM, then SIGKILL) at the end."""

    def __init__(
        self, environ: Mapping[str, str], database_url: str, log_dir: Path, **overrides: str
    ) -> None:
        self.env = {
            **environ,
            "CHRONOVERSE_DATABASE_URL": database_url,
            "CHRONOVERSE_KAFKA_TOPIC_PREFIX": f"e2e{uuid.uuid4().hex[:8]}.",
            "CHRONOVERSE_LOG_FORMAT": "json",
            "CHRONOVERSE_LOG_LEVEL": "DEBUG",
            "CHRONOVERSE_INSTALLATION": f"e2e-{uuid.uuid4().hex[:8]}",
            **overrides,
        }
        self.log_dir = log_dir
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.health_ports: dict[str, int] = {}
        self.http_port = free_port()
        self.grpc_port = free_port()
        self.api = f"http://127.0.0.1:{self.http_port}"

    def start(self, name: str, service: str, **env: str) -> subprocess.Popen[bytes]:
        port = self.http_port if service == "server" else free_port()
        full_env = {
            **self.env,
            "CHRONOVERSE_HEALTH_PORT": str(port),
            "CHRONOVERSE_HTTP_PORT": str(self.http_port),
            "CHRONOVERSE_GRPC_PORT": str(self.grpc_port),
            "CHRONOVERSE_WORKER_ID": name,
            **env,
        }
        log = open(self.log_dir / f"{name}.log", "ab")
        process = subprocess.Popen(
            self.command(name, service, full_env),
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.processes[name] = process
        self.health_ports[name] = port
        deadline = time.monotonic() + 60
        while not ready(port):
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}; see {self.log_dir}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} not ready after 60s; see {self.log_dir}")
            time.sleep(0.1)
        return process

    def command(self, name: str, service: str, env: Mapping[str, str]) -> list[str]:
        """The argv that runs ``service``; subclasses run it elsewhere (in a container)."""
        return [str(BIN / f"chronoverse-{service}")]

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
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes.clear()

    def metrics(self, name: str) -> str:
        port = self.health_ports[name]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            return str(response.read().decode())

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text()[-4000:]}" for p in self.log_dir.glob("*.log")
        )


class ApiUser:
    """A registered user talking to the stack's HTTP API."""

    def __init__(self, api: str) -> None:
        self.http = httpx.Client(base_url=api, timeout=30)
        email = f"e2e-{uuid.uuid4().hex[:10]}@example.com"
        credentials = {"email": email, "password": "correct horse"}
        self.http.post("/auth/register", json=credentials).raise_for_status()
        token = self.http.post("/auth/login", json=credentials).json()["token"]
        self.http.headers["Authorization"] = f"Bearer {token}"

    def create(self, **body: Any) -> dict[str, Any]:
        response = self.http.post("/workflows", json=body)
        assert response.status_code == 201, response.text
        return dict(response.json())

    def workflow(self, workflow_id: str) -> dict[str, Any]:
        return dict(self.http.get(f"/workflows/{workflow_id}").json())

    def jobs(self, workflow_id: str) -> list[dict[str, Any]]:
        response = self.http.get(f"/workflows/{workflow_id}/jobs", params={"limit": 200})
        assert response.status_code == 200, response.text
        return list(response.json()["jobs"])

    def trigger(self, workflow_id: str) -> httpx.Response:
        return self.http.post(f"/workflows/{workflow_id}/jobs")

    def close(self) -> None:
        self.http.close()


def dumps(value: Any) -> str:
    return json.dumps(value, default=str)
