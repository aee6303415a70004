"""Docker adapter."""

from __future__ import annotations

import docker

from chronoverse.settings import DockerSettings


def connect(settings: DockerSettings, *, timeout_s: float = 10.0) -> docker.DockerClient:
    if settings.docker_host:
        return docker.DockerClient(base_url=settings.docker_host, timeout=int(timeout_s))
    return docker.from_env(timeout=int(timeout_s))


def ping(client: docker.DockerClient) -> None:
    client.ping()
