"""The real service processes, started and stopped the way users do it: `make up` / `make down`."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path

import confluent_kafka
import grpc
import pytest
from confluent_kafka import ConsumerGroupTopicPartitions
from confluent_kafka.admin import AdminClient
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from chronoverse.domain import Topic
from chronoverse.kafka.admin import delete_topics, ensure_topics, list_topics
from chronoverse.kafka.deadletters import DeadLetterReader
from chronoverse.settings import KafkaSettings
from chronoverse.v1 import server_pb2, server_pb2_grpc, workflows_pb2, workflows_pb2_grpc
from tests.conftest import ROOT, wait_until
from tests.e2e.stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

SERVICES = ["server", "scheduling-worker", "workflow-worker", "execution-worker", "log-processor"]
MODULES = ["server", "scheduling_worker", "workflow_worker", "execution_worker", "log_processor"]
OFFSET = 1000 + (os.getpid() % 50) * 10
HEALTH_PORTS = {
    "server": 9100 + OFFSET,
    "scheduling-worker": 9101 + OFFSET,
    "workflow-worker": 9102 + OFFSET,
    "execution-worker": 9103 + OFFSET,
    "log-processor": 9104 + OFFSET,
}
BIN = Path(sys.executable).parent


def http_get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (urllib.error.URLError, ConnectionError):
        return 0, b""  # nothing listening (yet)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purposes.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


@pytest.mark.parametrize("module", MODULES)
def test_each_service_module_has_help(module: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", f"services.{module}", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "CHRONOVERSE_" in result.stdout
    assert "SIGTERM" in result.stdout


@pytest.mark.parametrize("script", [f"chronoverse-{s}" for s in SERVICES] + ["chronoverse"])
def test_each_console_script_has_help(script: str) -> None:
    result = subprocess.run([BIN / script, "--help"], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert "Usage:" in result.stdout


def test_an_invalid_setting_stops_the_service_with_a_readable_error(
    environ: Mapping[str, str],
) -> None:
    result = subprocess.run(
        [BIN / "chronoverse-log-processor"],
        env={**environ, "CHRONOVERSE_HEALTH_PORT": "not-a-port"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "CHRONOVERSE_HEALTH_PORT" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture
def stack_env(
    environ: Mapping[str, str], database_url: str, tmp_path: Path
) -> Iterator[dict[str, str]]:
    env = {
        **environ,
        "CHRONOVERSE_RUN_DIR": str(tmp_path / "run"),
        "CHRONOVERSE_UP_PORT_OFFSET": str(OFFSET),
        "CHRONOVERSE_DATABASE_URL": database_url,
        # Topics and consumer groups of its own: a developer's `make up` may share the broker,
        # and so do the other tests.
        "CHRONOVERSE_KAFKA_TOPIC_PREFIX": f"up{uuid.uuid4().hex[:8]}.",
    }
    yield env
    drop_topics(KafkaSettings.from_environ(env))


def drop_topics(settings: KafkaSettings) -> None:
    """Delete the topics of a test's own prefix (those that exist)."""
    present = list_topics(settings) & set(settings.all_topics())
    if present:
        delete_topics(settings, present)


def make(target: str, env: Mapping[str, str]) -> str:
    result = subprocess.run(
        ["make", "--no-print-directory", target],
        cwd=ROOT,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, f"make {target} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


@pytest.fixture
def stack(stack_env: dict[str, str]) -> Iterator[dict[str, int]]:
    """`make up` in a run folder of the test's own; `make down` afterwards, whatever happens."""
    try:
        output = make("up", stack_env)
        run_dir = Path(stack_env["CHRONOVERSE_RUN_DIR"])
        pids = {s: int((run_dir / "pids" / f"{s}.pid").read_text()) for s in SERVICES}
        assert f"http://127.0.0.1:{8080 + OFFSET}" in output
        yield pids
    finally:
        make("down", stack_env)


def test_make_up_twice_starts_nothing_twice_and_make_down_stops_all(
    stack: dict[str, int], stack_env: dict[str, str]
) -> None:
    for service, port in HEALTH_PORTS.items():
        status, body = http_get(port, "/readyz")
        assert status == 200, f"{service}: {body!r}"
        assert json.loads(body)["status"] == "ready"

    again = make("up", stack_env)
    for service, pid in stack.items():
        assert f"{service} already running (pid {pid})" in again
    assert "started" not in again

    down = make("down", stack_env)
    assert "killing" not in down, "a service ignored SIGTERM"
    for service, pid in stack.items():
        assert not alive(pid), f"{service} (pid {pid}) is still running"
    logs = Path(stack_env["CHRONOVERSE_RUN_DIR"]) / "logs"
    for service in SERVICES:
        messages = [
            json.loads(line)["message"]
            for line in (logs / f"{service}.log").read_text().splitlines()
            if line.startswith("{")
        ]
        assert any(re.search(r"\bstopped\b", m) for m in messages), (
            f"{service} did not stop cleanly"
        )


def test_workers_serve_metrics(stack: dict[str, int]) -> None:
    for service, port in HEALTH_PORTS.items():
        status, body = http_get(port, "/metrics")
        assert status == 200, service
        assert b"python_info" in body or b"process_" in body


def test_the_public_port_keeps_metrics_and_dependency_details_to_itself(
    stack: dict[str, int],
) -> None:
    status, _ = http_get(8080 + OFFSET, "/metrics")
    assert status == 404
    status, body = http_get(8080 + OFFSET, "/readyz")
    assert status == 200
    assert json.loads(body) == {"status": "ready"}
    # The health port names each dependency.
    status, body = http_get(HEALTH_PORTS["server"], "/readyz")
    assert json.loads(body)["checks"] == {"postgres": "ok", "redis": "ok"}


def test_grpc_health_reflection_and_server_info(stack: dict[str, int]) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{50051 + OFFSET}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        response = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        assert response.status == health_pb2.HealthCheckResponse.SERVING

        services = set(ProtoReflectionDescriptorDatabase(channel).get_services())
        assert {
            "chronoverse.v1.ServerInfoService",
            "chronoverse.v1.AuthService",
            "chronoverse.v1.WorkflowService",
            "grpc.health.v1.Health",
        } <= services

        info = server_pb2_grpc.ServerInfoServiceStub(channel).GetServerInfo(
            server_pb2.GetServerInfoRequest(), timeout=5
        )
        assert info.api_versions == ["v1"]


def test_openapi_document_is_served(stack: dict[str, int]) -> None:
    status, body = http_get(8080 + OFFSET, "/openapi.json")
    assert status == 200
    assert json.loads(body)["info"]["title"] == "Chronoverse"


@pytest.fixture
def own_kafka(environ: Mapping[str, str]) -> Iterator[dict[str, str]]:
    """The machine's settings with a topic prefix of the test's own, and its topics."""
    env = {**environ, "CHRONOVERSE_KAFKA_TOPIC_PREFIX": f"e2e{uuid.uuid4().hex[:8]}."}
    settings = KafkaSettings.from_environ(env)
    ensure_topics(settings, settings.all_topics(), partitions=1)
    yield env
    drop_topics(settings)


@contextlib.contextmanager
def log_processor(env: Mapping[str, str], port: int) -> Iterator[subprocess.Popen[bytes]]:
    """A log processor with these settings, stopped with SIGTERM (it must exit 0, promptly)."""
    process = subprocess.Popen(
        [BIN / "chronoverse-log-processor"],
        env={**env, "CHRONOVERSE_HEALTH_PORT": str(port)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: http_get(port, "/healthz")[0] == 200, message="the health listener")
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        assert process.wait(timeout=15) == 0
        assert time.monotonic() - started < 15


def test_readiness_names_the_dependency_that_is_down(own_kafka: dict[str, str]) -> None:
    port = 9190 + OFFSET % 100
    with log_processor({**own_kafka, "CHRONOVERSE_REDIS_URL": "redis://127.0.0.1:1/0"}, port):
        status, body = http_get(port, "/readyz")
        assert status == 503
        checks = json.loads(body)["checks"]
        assert checks["redis"].startswith("error")
        assert checks["postgres"] == "ok"
        assert checks["kafka"] == "ok"
        assert checks["kafka_assignment"] == "ok"


DEFAULT_GROUPS = [
    "chronoverse-log-processor",
    "chronoverse-workflow-worker",
    "chronoverse-execution-worker",
]


def committed_topics(admin: AdminClient, group: str) -> set[str]:
    [future] = admin.list_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(group)], request_timeout=10
    ).values()
    return {tp.topic for tp in future.result().topic_partitions or []}


def test_a_service_a_test_starts_uses_only_its_own_groups_and_topics(
    own_kafka: dict[str, str], database_url: str
) -> None:
    # `make test` followed by `make up` must work: a service a test started once joined the
    # default group, and on tansu left it stuck for every later member (issue 14).
    settings = KafkaSettings.from_environ(own_kafka)
    port = 9191 + OFFSET % 100
    with log_processor({**own_kafka, "CHRONOVERSE_DATABASE_URL": database_url}, port):
        producer = confluent_kafka.Producer({"bootstrap.servers": settings.kafka_bootstrap_servers})
        producer.produce(settings.topic(Topic.JOB_LOGS), key=b"job", value=b"\xffnot json")
        assert producer.flush(10) == 0
        # Dead-lettered by the service, which then commits past it in its own group.
        wait_until(
            lambda: b'reason="malformed"' in http_get(port, "/metrics")[1],
            timeout_s=60,
            message="the dead letter counted",
        )
        metrics = http_get(port, "/metrics")[1].decode()
        own_group = settings.group("chronoverse-log-processor")
        assert f'chronoverse_kafka_assigned_partitions{{group="{own_group}"}} 1.0' in metrics
        status, body = http_get(port, "/readyz")
        assert status == 200, body
        assert json.loads(body)["checks"]["kafka_assignment"] == "ok"
    with DeadLetterReader(settings, settings.dead_letter_topic(Topic.JOB_LOGS)) as reader:
        [stored] = reader.read()
    assert stored.letter is not None and stored.letter.group == own_group

    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers})
    ours = set(settings.all_topics())
    assert committed_topics(admin, own_group) == {settings.topic(Topic.JOB_LOGS)}
    for group in DEFAULT_GROUPS:
        assert not committed_topics(admin, group) & ours, group


def test_every_stack_a_test_starts_has_a_topic_prefix_of_its_own(
    environ: Mapping[str, str], tmp_path: Path, stack_env: dict[str, str]
) -> None:
    stacks = [Stack(environ, "postgresql://unused", tmp_path) for _ in range(2)]
    prefixes = {stack.env["CHRONOVERSE_KAFKA_TOPIC_PREFIX"] for stack in stacks}
    assert len(prefixes) == 2 and "" not in prefixes
    assert stack_env["CHRONOVERSE_KAFKA_TOPIC_PREFIX"] not in {"", *prefixes}


def test_a_user_creates_workflows_through_the_running_server(stack: dict[str, int]) -> None:
    base = f"http://127.0.0.1:{8080 + OFFSET}"

    def post(path: str, body: dict[str, object], token: str | None = None) -> dict[str, object]:
        request = urllib.request.Request(
            base + path,
            data=json.dumps(body).encode(),
            method="POST",
            headers={
                "Content-Type": "application/json",
                **({"Authorization": f"Bearer {token}"} if token else {}),
            },
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())  # type: ignore[no-any-return]

    credentials = {"email": "e2e@example.com", "password": "correct horse"}
    post("/auth/register", credentials)
    token = str(post("/auth/login", credentials)["token"])
    created = post(
        "/workflows",
        {
            "name": "hello",
            "kind": "CONTAINER",
            "interval": 1,
            "payload": '{"image": "local/busybox:latest"}',
        },
        token,
    )
    assert created["build_status"] == "QUEUED"

    with grpc.insecure_channel(f"127.0.0.1:{50051 + OFFSET}") as channel:
        stub = workflows_pb2_grpc.WorkflowServiceStub(channel)
        listed = stub.ListWorkflows(
            workflows_pb2.ListWorkflowsRequest(),
            metadata=(("authorization", f"Bearer {token}"),),
            timeout=10,
        )
    assert [w.id for w in listed.workflows] == [created["id"]]
