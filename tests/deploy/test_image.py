"""The Dockerfile: build the image from locally imported stand-ins of its base images (no
registry here), then run what compose.yaml runs in it: the init step against an empty database,
the five services, their healthchecks, and a CONTAINER job from trigger to stored logs.

Containers use the host network (dockerd here has no bridge), so the services reach this
machine's Postgres, Redis and broker at the addresses in .run/env.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import docker
import pytest
import yaml

from tests.conftest import wait_until
from tests.e2e.stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "chronoverse:test"
SERVICES = ("server", "scheduling-worker", "workflow-worker", "execution-worker", "log-processor")
COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]


def docker_run(image: str, *argv: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", "run", "--rm", image, *argv],
        capture_output=True,
        text=True,
        timeout=120,
        **kwargs,
    )


@pytest.fixture(scope="module")
def image(docker_client: docker.DockerClient) -> str:
    built = subprocess.run(
        [str(ROOT / "scripts" / "image.sh"), IMAGE], capture_output=True, text=True, timeout=540
    )
    assert built.returncode == 0, built.stdout[-4000:] + built.stderr[-4000:]
    return IMAGE


@pytest.mark.parametrize(
    "argv",
    [
        ["chronoverse", "--help"],
        ["python", "-m", "services.server", "--help"],
        *[[f"chronoverse-{service}", "--help"] for service in SERVICES],
        *[
            ["python", "-m", f"services.{service.replace('-', '_')}", "--help"]
            for service in SERVICES
        ],
    ],
    ids=lambda argv: " ".join(argv[:3]),
)
def test_commands_run_inside_the_image(image: str, argv: list[str]) -> None:
    result = docker_run(image, *argv)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage:"), result.stdout


def test_the_image_runs_unprivileged_without_build_tools_or_sources(image: str) -> None:
    result = docker_run(image, "sh", "-c", "id -u; command -v uv || echo no-uv; ls /src || true")
    assert result.returncode == 0, result.stderr
    uid, uv, *_ = result.stdout.splitlines()
    assert uid == "10001"
    assert uv == "no-uv"
    assert "No such file" in result.stderr


class ImageStack(Stack):
    """The services as containers of the image, run the way compose.yaml runs them."""

    def __init__(self, image: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.image = image
        self.names: dict[str, str] = {}

    def docker_argv(self, name: str, env: Mapping[str, str]) -> list[str]:
        container = f"cv-test-{uuid.uuid4().hex[:8]}-{name}"
        self.names[name] = container
        argv = ["docker", "run", "--rm", "--name", container, "--network", "host"]
        # `-e NAME` passes the value from the docker CLI's own environment.
        return argv + [arg for key in env if key.startswith("CHRONOVERSE_") for arg in ("-e", key)]

    def command(self, name: str, service: str, env: Mapping[str, str]) -> list[str]:
        argv = self.docker_argv(name, env)
        compose = COMPOSE[service]
        if "user" in compose:
            argv += ["--user", compose["user"]]
        for volume in compose.get("volumes", []):
            argv += [
                "--volume",
                volume.replace("${DOCKER_SOCKET:-/var/run/docker.sock}", "/var/run/docker.sock"),
            ]
        return [*argv, self.image, *compose["command"]]

    def run_init(self) -> subprocess.CompletedProcess[str]:
        argv = self.docker_argv("init", self.env)
        return subprocess.run(
            [*argv, self.image, *COMPOSE["init"]["command"]],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def exec(self, name: str, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["docker", "exec", self.names[name], *argv], capture_output=True, text=True, timeout=30
        )

    def stop_all(self) -> None:
        super().stop_all()
        subprocess.run(["docker", "rm", "-f", *self.names.values()], capture_output=True)


@pytest.fixture(scope="module")
def stack(
    image: str,
    environ: Mapping[str, str],
    empty_database_factory: Callable[..., str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ImageStack]:
    stack = ImageStack(image, environ, empty_database_factory(), tmp_path_factory.mktemp("image"))
    try:
        init = stack.run_init()
        assert init.returncode == 0, init.stdout + init.stderr
        assert "applied 0001_initial" in init.stdout, init.stdout
        assert "created:" in init.stdout, init.stdout
        for service in SERVICES:
            stack.start(service, service)
        yield stack
    finally:
        stack.stop_all()


def test_the_compose_healthcheck_passes_in_each_service(stack: ImageStack) -> None:
    for service in SERVICES:
        probe = COMPOSE[service]["healthcheck"]["test"][1:-1]  # compose's, but this stack's port
        result = stack.exec(service, *probe, str(stack.health_ports[service]))
        assert result.returncode == 0, (service, result.stdout, result.stderr)


def test_the_readme_walkthrough_runs_in_the_server_container(stack: ImageStack) -> None:
    # README "Deploy with Docker Compose": a user from `users create`, then the CLI with its
    # token, all through `docker compose exec server ...` (here: docker exec).
    server = ["--server", stack.api]
    created = stack.exec(
        "server", "chronoverse", "users", "create", "--email", "ada@example.com",
        "--password", "correct horse",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    token = created.stdout.rsplit(": ", 1)[1].strip()

    def cli(*argv: str) -> Any:
        done = subprocess.run(
            ["docker", "exec", "-e", f"CHRONOVERSE_TOKEN={token}", stack.names["server"],
             "chronoverse", *server, *argv],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, (argv, done.stdout, done.stderr)
        return json.loads(done.stdout) if "--json" in argv else done.stdout

    payload = {"image": "local/busybox:latest", "command": ["echo", "hello from compose"]}
    workflow = cli(
        "workflows", "create", "--name", "hello", "--kind", "CONTAINER", "--interval", "60",
        "--payload", json.dumps(payload), "--json",
    )  # fmt: skip
    wait_until(
        lambda: cli("workflows", "get", workflow["id"], "--json")["build_status"] == "COMPLETED",
        timeout_s=60,
        message="the build",
    )
    job = cli("trigger", workflow["id"], "--json")

    def finished() -> dict[str, Any] | None:
        found = cli("jobs", "get", workflow["id"], job["id"], "--json")
        return found if found["status"] in {"COMPLETED", "FAILED"} else None

    done = wait_until(finished, timeout_s=120, message="the job to finish")
    assert (done["status"], done["exit_code"]) == ("COMPLETED", 0), stack.logs()
    assert cli("logs", job["id"], "--follow").splitlines() == ["hello from compose"]
