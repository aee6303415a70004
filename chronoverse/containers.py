"""Docker adapter."""

from __future__ import annotations

import docker

from chronoverse.health import PROBE_TIMEOUT_S, Check
from chronoverse.settings import DockerSettings


def connect(settings: DockerSettings, *, timeout_s: float = 10.0) -> docker.DockerClient:
    if settings.docker_host:
        return docker.DockerClient(base_url=settings.docker_host, timeout=int(timeout_s))
    return docker.from_env(timeout=int(timeout_s))


def ping(client: docker.DockerClient) -> None:
    client.ping()


def docker_check(settings: DockerSettings) -> Check:
    """Readiness probe: the Docker engine answers a ping."""

    def probe() -> None:
        client = connect(settings, timeout_s=PROBE_TIMEOUT_S)
        try:
            ping(client)
        finally:
            client.close()

    return Check(name="docker", probe=probe)
