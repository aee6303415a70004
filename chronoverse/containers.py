"""Docker adapter."""

from __future__ import annotations

import docker
from docker.errors import APIError, NotFound

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


def image_has_path(
    client: docker.DockerClient, image_id: str, path: str, *, labels: dict[str, str]
) -> bool:
    """Whether ``path`` exists in the image: asked of a container that is created, never
    started (Docker's archive API answers with the path's stat before sending anything). A path
    Docker cannot stat (e.g. under a file) counts as absent; the job then fails when Docker
    refuses it as a working dir, with Docker's reason."""
    container = client.containers.create(
        image=image_id, entrypoint=["/nonexistent"], network_mode="none", labels=labels
    )
    try:
        stream, _ = client.api.get_archive(str(container.id), path)
        close = getattr(stream, "close", None)
        if close is not None:
            close()
        return True
    except NotFound:
        return False
    except APIError:  # Docker answers 500 for a path under a file
        return False
    finally:
        container.remove(force=True)
