"""Scheduling and execution with the real service processes, Postgres and the broker."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import psycopg
import pytest

from chronoverse.domain import Topic
from chronoverse.jobs import JobMessage
from chronoverse.kafka.admin import ensure_topics
from chronoverse.kafka.producer import OutgoingMessage, Producer
from chronoverse.settings import KafkaSettings
from tests.conftest import wait_until
from tests.e2e.stack import ApiUser, Stack
from tests.factories import Endpoint, make_user, make_workflow

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def shared_stack(
    environ: Mapping[str, str],
    empty_database_factory: Callable[..., str],
    migrated_template: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    stack = Stack(
        environ,
        empty_database_factory(template=migrated_template),
        tmp_path_factory.mktemp("stack"),
        CHRONOVERSE_LEASE_S="5",
    )
    ensure_topics(
        KafkaSettings.from_environ(stack.env), KafkaSettings.from_environ(stack.env).all_topics()
    )
    try:
        for name in ("server", "scheduling-worker", "workflow-worker", "execution-worker"):
            stack.start(name, name)
        yield stack
    finally:
        stack.stop_all()


@pytest.fixture
def user(shared_stack: Stack) -> Iterator[ApiUser]:
    user = ApiUser(shared_stack.api)
    yield user
    user.close()


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    with Endpoint().serving() as served:
        yield served


def built(user: ApiUser, workflow: dict[str, Any]) -> None:
    wait_until(
        lambda: user.workflow(workflow["id"])["build_status"] == "COMPLETED",
        timeout_s=30,
        message="the HEARTBEAT build to complete",
    )


def make_due(stack: Stack, workflow_id: str) -> None:
    """Move the next slot to now (the scheduling loop itself stays the real one)."""
    with psycopg.connect(stack.env["CHRONOVERSE_DATABASE_URL"], autocommit=True) as conn:
        conn.execute("UPDATE workflows SET next_run_at = now() WHERE id = %s", (workflow_id,))


def finished(jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [j for j in jobs if j["status"] in {"COMPLETED", "FAILED", "CANCELED"}]


def test_an_interval_heartbeat_gets_automatic_jobs_by_itself(
    shared_stack: Stack, user: ApiUser, endpoint: Endpoint
) -> None:
    endpoint.delay_s = 1.5  # long enough to see RUNNING
    workflow = user.create(
        name="beat", kind="HEARTBEAT", interval=1, payload={"endpoint": endpoint.url}
    )
    built(user, workflow)
    seen: list[str] = []

    def first_completed() -> bool:
        jobs = user.jobs(workflow["id"])
        if jobs:
            seen.append(jobs[-1]["status"])
        return bool(jobs) and jobs[-1]["status"] == "COMPLETED"

    wait_until(first_completed, timeout_s=60, interval_s=0.05, message="the first automatic job")
    [job] = user.jobs(workflow["id"])
    assert job["trigger"] == "AUTOMATIC"
    assert job["scheduled_at"] <= job["queued_at"] <= job["started_at"] <= job["completed_at"]
    assert "RUNNING" in seen
    assert [s for i, s in enumerate(seen) if i == 0 or seen[i - 1] != s][-2:] == [
        "RUNNING",
        "COMPLETED",
    ]

    make_due(shared_stack, workflow["id"])
    wait_until(
        lambda: len(finished(user.jobs(workflow["id"]))) == 2,
        timeout_s=60,
        message="the second automatic job",
    )
    jobs = user.jobs(workflow["id"])
    assert {j["trigger"] for j in jobs} == {"AUTOMATIC"}
    assert len({j["scheduled_at"] for j in jobs}) == 2
    assert endpoint.hits == 2

    scheduler_metrics = shared_stack.metrics("scheduling-worker")
    assert 'chronoverse_dispatch_lag_seconds_count{trigger="AUTOMATIC"}' in scheduler_metrics
    executor_metrics = shared_stack.metrics("execution-worker")
    assert "chronoverse_job_queue_to_start_seconds_count" in executor_metrics
    assert 'chronoverse_job_duration_seconds_count{kind="HEARTBEAT"}' in executor_metrics
    assert (
        'chronoverse_job_outcomes_total{failure_kind="",kind="HEARTBEAT",status="COMPLETED"}'
        in executor_metrics
    )


def test_consecutive_failures_terminate_the_workflow(
    shared_stack: Stack, user: ApiUser, endpoint: Endpoint
) -> None:
    endpoint.status = 500
    workflow = user.create(
        name="down",
        kind="HEARTBEAT",
        interval=1,
        max_consecutive_job_failures_allowed=3,
        payload={"endpoint": endpoint.url},
    )
    built(user, workflow)

    def step() -> bool:
        state = user.workflow(workflow["id"])
        if state["terminated_at"]:
            return True
        jobs = user.jobs(workflow["id"])
        if jobs and all(j["status"] in {"COMPLETED", "FAILED", "CANCELED"} for j in jobs):
            make_due(shared_stack, workflow["id"])  # do not wait a minute for the next slot
        return False

    wait_until(step, timeout_s=120, interval_s=0.2, message="termination after 3 failures")
    state = user.workflow(workflow["id"])
    assert state["consecutive_job_failures_count"] == 3
    assert state["terminated_reason"].startswith("terminated after 3 consecutive failed jobs")
    jobs = user.jobs(workflow["id"])
    assert [j["status"] for j in jobs] == ["FAILED"] * 3
    assert all(j["failure_kind"] == "USER" and "got 500" in j["error"] for j in jobs)
    manual = user.trigger(workflow["id"])
    assert manual.status_code == 409
    assert manual.json()["error"]["code"] == "workflow_terminated"
    time.sleep(1.5)  # no further jobs appear
    assert len(user.jobs(workflow["id"])) == 3


def test_a_success_resets_the_failure_count(
    shared_stack: Stack, user: ApiUser, endpoint: Endpoint
) -> None:
    workflow = user.create(
        name="flaky",
        kind="HEARTBEAT",
        interval=10080,
        max_consecutive_job_failures_allowed=2,
        payload={"endpoint": endpoint.url},
    )
    built(user, workflow)
    wait_until(lambda: finished(user.jobs(workflow["id"])), timeout_s=60, message="the first run")
    for index, status in enumerate((500, 200, 500), start=2):
        endpoint.status = status
        response = user.trigger(workflow["id"])
        assert response.status_code == 201, response.text
        wait_until(
            lambda n=index: len(finished(user.jobs(workflow["id"]))) == n,
            timeout_s=60,
            message=f"manual run {index}",
        )
    state = user.workflow(workflow["id"])
    assert state["consecutive_job_failures_count"] == 1
    assert state["terminated_at"] is None
    assert [j["status"] for j in user.jobs(workflow["id"])][:3] == ["FAILED", "COMPLETED", "FAILED"]


def test_a_manual_run_before_the_build_completes_is_409(shared_stack: Stack, user: ApiUser) -> None:
    workflow = user.create(
        name="box", kind="CONTAINER", interval=5, payload={"image": "local/busybox:latest"}
    )
    response = user.trigger(workflow["id"])
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "workflow_not_built"
    assert "QUEUED" in response.json()["error"]["message"]


def test_the_same_job_message_twice_runs_once(
    shared_stack: Stack, user: ApiUser, endpoint: Endpoint
) -> None:
    workflow = user.create(
        name="once", kind="HEARTBEAT", interval=10080, payload={"endpoint": endpoint.url}
    )
    built(user, workflow)
    wait_until(lambda: finished(user.jobs(workflow["id"])), timeout_s=60, message="the first run")
    assert endpoint.hits == 1
    with psycopg.connect(shared_stack.env["CHRONOVERSE_DATABASE_URL"], autocommit=True) as conn:
        job_id = conn.execute(
            "INSERT INTO jobs (workflow_id, user_id, trigger, scheduled_at, status, queued_at, "
            "published_at) SELECT id, user_id, 'MANUAL', now(), 'QUEUED', now(), now() "
            "FROM workflows WHERE id = %s RETURNING id",
            (workflow["id"],),
        ).fetchone()[0]  # type: ignore[index]
    settings = KafkaSettings.from_environ(shared_stack.env)
    message = JobMessage(job_id=job_id, workflow_id=workflow["id"])
    producer = Producer(settings, client_id="duplicator")
    producer.publish_all(
        [
            OutgoingMessage(
                topic=settings.topic(Topic.JOBS), key=workflow["id"], value=message.encode()
            )
        ]
        * 2
    )
    producer.close()
    wait_until(
        lambda: len(finished(user.jobs(workflow["id"]))) == 2,
        timeout_s=60,
        message="the duplicated job",
    )
    time.sleep(1.0)
    assert endpoint.hits == 2  # the first run, plus the duplicated job once
    job = user.http.get(f"/workflows/{workflow['id']}/jobs/{job_id}").json()
    assert (job["status"], job["attempt"]) == ("COMPLETED", 1)


def test_two_scheduling_workers_create_no_duplicate_jobs(
    environ: Mapping[str, str],
    empty_database_factory: Callable[..., str],
    migrated_template: str,
    tmp_path: Path,
) -> None:
    stack = Stack(
        environ,
        empty_database_factory(template=migrated_template),
        tmp_path,
        CHRONOVERSE_SCHEDULE_BATCH_SIZE="20",
    )
    settings = KafkaSettings.from_environ(stack.env)
    ensure_topics(settings, settings.all_topics())
    with psycopg.connect(stack.env["CHRONOVERSE_DATABASE_URL"], autocommit=True) as conn:
        user_id = make_user(conn)
        for _ in range(400):
            make_workflow(conn, user_id, interval=60)
    try:
        stack.start("scheduler-a", "scheduling-worker")
        stack.start("scheduler-b", "scheduling-worker")
        with psycopg.connect(stack.env["CHRONOVERSE_DATABASE_URL"], autocommit=True) as conn:

            def all_queued() -> bool:
                row = conn.execute("SELECT count(*) FROM jobs WHERE status = 'QUEUED'").fetchone()
                return bool(row and row[0] == 400)

            wait_until(all_queued, timeout_s=60, message="400 queued jobs")
            rows = conn.execute("SELECT count(*), count(DISTINCT workflow_id) FROM jobs").fetchone()
        assert rows == (400, 400)
    finally:
        stack.stop_all()
