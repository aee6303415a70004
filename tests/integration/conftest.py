"""A real server (HTTP on uvicorn, and gRPC) on free ports, against a database of its own."""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import grpc
import httpx
import pytest
import uvicorn

from services.server.app import create_app
from services.server.context import ServerContext
from services.server.grpc import create_grpc_server
from services.server.settings import Settings
from tests.conftest import wait_until


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class RunningServer:
    http_url: str
    grpc_target: str
    database_url: str
    settings: Settings


@pytest.fixture(scope="session")
def server(
    environ: Mapping[str, str], empty_database_factory: Callable[..., str], migrated_template: str
) -> Iterator[RunningServer]:
    database_url = empty_database_factory(template=migrated_template)
    settings = Settings.from_environ(
        {
            **environ,
            "CHRONOVERSE_DATABASE_URL": database_url,
            "CHRONOVERSE_HTTP_HOST": "127.0.0.1",
            "CHRONOVERSE_HTTP_PORT": str(free_port()),
            "CHRONOVERSE_GRPC_HOST": "127.0.0.1",
            "CHRONOVERSE_GRPC_PORT": str(free_port()),
            "CHRONOVERSE_MAX_REQUEST_BYTES": "65536",
            "CHRONOVERSE_SSE_KEEPALIVE_S": "0.5",
            # Every test registers its own users, all from 127.0.0.1.
            "CHRONOVERSE_REGISTRATION": "open",
            "CHRONOVERSE_AUTH_RATE_LIMIT_PER_IP": "100000/minute",
            # Quotas have their own tests (test_quotas.py); here no test runs into one.
            "CHRONOVERSE_MANUAL_RUNS_PER_MINUTE": "100000",
            "CHRONOVERSE_MAX_WORKFLOWS_PER_USER": "100000",
            "CHRONOVERSE_MAX_ACTIVE_JOBS_PER_USER": "100000",
        }
    )
    context = ServerContext(settings)
    context.open()
    grpc_server, _, grpc_port = create_grpc_server(context)
    grpc_server.start()
    http = uvicorn.Server(
        uvicorn.Config(
            create_app(context), host="127.0.0.1", port=settings.http_port, log_config=None
        )
    )
    thread = threading.Thread(target=http.run, daemon=True)
    thread.start()
    wait_until(lambda: http.started, timeout_s=20, message="uvicorn to start")
    yield RunningServer(
        http_url=f"http://127.0.0.1:{settings.http_port}",
        grpc_target=f"127.0.0.1:{grpc_port}",
        database_url=database_url,
        settings=settings,
    )
    http.should_exit = True
    thread.join(timeout=10)
    grpc_server.stop(1).wait()
    context.close()


@pytest.fixture
def http(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.http_url, timeout=30) as client:
        yield client


def new_user(client: httpx.Client) -> tuple[str, dict[str, str]]:
    """Register a fresh user; return the email and the Authorization header of a new token."""
    email = f"user-{uuid.uuid4().hex[:10]}@example.com"
    assert (
        client.post(
            "/auth/register", json={"email": email, "password": "correct horse"}
        ).status_code
        == 201
    )
    response = client.post("/auth/login", json={"email": email, "password": "correct horse"})
    assert response.status_code == 200, response.text
    return email, {"Authorization": f"Bearer {response.json()['token']}"}


@pytest.fixture
def user(http: httpx.Client) -> dict[str, str]:
    return new_user(http)[1]


@pytest.fixture
def grpc_channel(server: RunningServer) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.grpc_target) as channel:
        yield channel
