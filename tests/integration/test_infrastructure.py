"""The infrastructure `make services` provides is real and usable the way the services use it."""

import docker
import pytest
import redis

pytestmark = pytest.mark.integration


def test_redis_round_trip(redis_client: redis.Redis) -> None:
    redis_client.set("chronoverse:test:key", "value", ex=10)
    assert redis_client.get("chronoverse:test:key") == b"value"


def test_busybox_image_runs_and_streams_both_streams(docker_client: docker.DockerClient) -> None:
    output = docker_client.containers.run(
        "local/busybox:latest",
        ["sh", "-c", "echo out; echo err >&2"],
        remove=True,
        stdout=True,
        stderr=True,
        network_mode="none",
    )
    assert set(output.decode().split()) == {"out", "err"}


def test_python_image_has_python(docker_client: docker.DockerClient) -> None:
    output = docker_client.containers.run(
        "local/python:3.11", ["python3", "-c", "print(6 * 7)"], remove=True, network_mode="none"
    )
    assert output.decode().strip() == "42"
