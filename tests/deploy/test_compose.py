"""compose.yaml: valid for docker-compose, and consistent with the code it deploys.

The images it names cannot be pulled on these machines, so the stack itself is exercised from
the built image in test_image.py; here the file is validated and checked against the settings.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from dotenv import dotenv_values

from chronoverse.cli.admin import AdminSettings
from chronoverse.secrets import generate_key
from services.execution_worker.settings import Settings as ExecutionSettings
from services.log_processor.settings import Settings as LogProcessorSettings
from services.scheduling_worker.settings import Settings as SchedulingSettings
from services.server.settings import Settings as ServerSettings
from services.workflow_worker.settings import Settings as WorkflowSettings
from tests.conftest import unavailable

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = {
    "server": ServerSettings,
    "scheduling-worker": SchedulingSettings,
    "workflow-worker": WorkflowSettings,
    "execution-worker": ExecutionSettings,
    "log-processor": LogProcessorSettings,
}
DOCKER_WORKERS = {"workflow-worker", "execution-worker"}
# Compose refuses to run without a secret key: a clean environment has just that.
CLEAN_ENV = {"PATH": "/usr/bin:/bin:/usr/local/bin", "CHRONOVERSE_SECRET_KEYS": generate_key()}
# The processes that read payloads, and so need the key.
KEY_HOLDERS = {"init", "server", "workflow-worker", "execution-worker"}


def _compose_config(*args: str, env: dict[str, str] | None = None) -> str:
    if shutil.which("docker-compose") is None:
        unavailable("docker-compose", FileNotFoundError("docker-compose"))
    result = subprocess.run(
        ["docker-compose", "--project-directory", str(ROOT), "-f", "compose.yaml", "config", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    # A clean environment: the defaults in compose.yaml, not this machine's CHRONOVERSE_*.
    config = yaml.safe_load(_compose_config(env=CLEAN_ENV))
    return dict(config["services"])


def test_docker_compose_validates_the_file() -> None:
    _compose_config("--quiet", env=CLEAN_ENV)


def test_compose_refuses_to_run_without_a_secret_key_and_says_how_to_make_one() -> None:
    _compose_config("--quiet", env=CLEAN_ENV)  # skips when docker-compose is missing
    result = subprocess.run(
        ["docker-compose", "--project-directory", str(ROOT), "-f", "compose.yaml", "config"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"PATH": CLEAN_ENV["PATH"]},
        timeout=60,
    )
    assert result.returncode != 0
    assert "CHRONOVERSE_SECRET_KEYS" in result.stderr
    assert "generate-key" in result.stderr


def test_the_secret_key_goes_to_the_processes_that_read_payloads_only(
    services: dict[str, Any],
) -> None:
    for name, service in services.items():
        given = service.get("environment", {}).get("CHRONOVERSE_SECRET_KEYS")
        assert given == (CLEAN_ENV["CHRONOVERSE_SECRET_KEYS"] if name in KEY_HOLDERS else None), (
            name
        )


def test_the_stack_has_the_infrastructure_an_init_step_and_the_five_services(
    services: dict[str, Any],
) -> None:
    assert set(services) == {"postgres", "redis", "kafka", "init", *SETTINGS}
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    init = services["init"]
    assert "chronoverse migrate" in " ".join(init["command"])
    assert "chronoverse topics create" in " ".join(init["command"])
    assert init["depends_on"] == {
        "postgres": {"condition": "service_healthy"},
        "kafka": {"condition": "service_healthy"},
    }
    for name in ("postgres", "redis", "kafka"):
        assert "healthcheck" in services[name], name


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_each_service_waits_for_init_restarts_and_probes_its_own_health_port(
    services: dict[str, Any], name: str
) -> None:
    service = services[name]
    assert service["depends_on"] == {"init": {"condition": "service_completed_successfully"}}
    assert service["restart"] == "unless-stopped"
    assert service["image"] == services["init"]["image"]
    settings = SETTINGS[name].model_fields
    port = settings["health_port"].default  # the server's too: /readyz with its checks
    assert service["healthcheck"]["test"] == [
        "CMD",
        "chronoverse",
        "healthcheck",
        "--port",
        str(port),
    ]


@pytest.mark.parametrize("name", [*sorted(SETTINGS), "init"])
def test_every_chronoverse_variable_is_a_setting(services: dict[str, Any], name: str) -> None:
    # A misspelt variable would be ignored silently. The services share one block of
    # connection settings, so a variable need only be known to one of them.
    known = {
        f"CHRONOVERSE_{field.upper()}"
        for settings in (*SETTINGS.values(), AdminSettings)
        for field in settings.model_fields
    }
    given = {key for key in services[name]["environment"] if key.startswith("CHRONOVERSE_")}
    assert given <= known, given - known
    assert "@postgres:5432/" in services[name]["environment"]["CHRONOVERSE_DATABASE_URL"]


def test_only_the_docker_workers_get_the_socket_and_the_rest_run_unprivileged(
    services: dict[str, Any],
) -> None:
    for name in SETTINGS:
        mounts = [str(volume) for volume in services[name].get("volumes", [])]
        if name in DOCKER_WORKERS:
            assert any("/var/run/docker.sock" in mount for mount in mounts), name
        else:
            assert mounts == [], name
            assert "user" not in services[name], name  # the image's unprivileged user


def test_workers_can_be_scaled(services: dict[str, Any]) -> None:
    # `--scale` needs no fixed container name and no host port per replica.
    for name in SETTINGS:
        assert "container_name" not in services[name], name
        if name != "server":
            assert "ports" not in services[name], name


def test_secrets_come_from_the_environment() -> None:
    config = yaml.safe_load(_compose_config(env={**CLEAN_ENV, "POSTGRES_PASSWORD": "s3cr3t"}))
    services = config["services"]
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"] == "s3cr3t"
    for name in SETTINGS:
        url = services[name]["environment"]["CHRONOVERSE_DATABASE_URL"]
        assert url == "postgresql://chronoverse:s3cr3t@postgres:5432/chronoverse", name


def test_env_example_documents_exactly_the_variables_compose_reads() -> None:
    used = set(re.findall(r"\$\{([A-Z0-9_]+)", (ROOT / "compose.yaml").read_text()))
    example = dotenv_values(ROOT / ".env.example")
    assert set(example) == used
    # and the example itself is a valid configuration, once given the key it leaves empty
    assert example["CHRONOVERSE_SECRET_KEYS"] == ""
    env = {**{k: v or "" for k, v in example.items()}, **CLEAN_ENV}
    services = yaml.safe_load(_compose_config(env=env))["services"]
    assert services["execution-worker"]["environment"]["CHRONOVERSE_CONCURRENCY"] == "8"
