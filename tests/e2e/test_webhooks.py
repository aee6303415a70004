"""Webhooks end to end: real service processes, a HEARTBEAT workflow whose jobs fail and
recover, and a local receiver that verifies every delivery with the Standard Webhooks library."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from chronoverse.kafka.admin import ensure_topics
from chronoverse.settings import KafkaSettings
from tests.conftest import wait_until
from tests.e2e.stack import ApiUser, Stack
from tests.factories import Endpoint
from tests.webhook_receiver import Receiver

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

FINAL = {"COMPLETED", "FAILED", "CANCELED"}
EVENTS = ["workflow.failing", "workflow.recovered", "workflow.terminated", "build.failed"]


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
        CHRONOVERSE_WEBHOOK_POLL_INTERVAL_S="0.1",
        CHRONOVERSE_WEBHOOK_BACKOFF_BASE_S="0.2",
        CHRONOVERSE_WEBHOOK_BACKOFF_MAX_S="1",
        CHRONOVERSE_WEBHOOK_TIMEOUT_S="2",
        CHRONOVERSE_WEBHOOK_CONCURRENCY="1",
    )
    settings = KafkaSettings.from_environ(stack.env)
    ensure_topics(settings, settings.all_topics())
    for name in ("server", "scheduling-worker", "workflow-worker", "execution-worker"):
        stack.start(name, name)
    yield stack
    stack.stop_all()


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    with Endpoint().serving() as served:
        yield served


def run_to_end(user: ApiUser, workflow_id: str, count: int) -> None:
    """Wait until the workflow has ``count`` jobs, all final."""

    def done() -> bool:
        jobs = user.jobs(workflow_id)
        return len(jobs) >= count and all(j["status"] in FINAL for j in jobs)

    wait_until(done, timeout_s=60, message=f"{count} finished jobs")


def test_two_failures_then_two_successes_send_one_failing_and_one_recovered(
    stack: Stack, endpoint: Endpoint
) -> None:
    user = ApiUser(stack.api)
    with Receiver().serving() as receiver:
        hook = user.http.post("/webhooks", json={"url": receiver.url, "events": EVENTS})
        assert hook.status_code == 201, hook.text
        receiver.secret = hook.json()["secret"]
        endpoint.status = 500
        # The first job runs at once (a week's interval: no other automatic one).
        workflow = user.create(
            name="flaky", kind="HEARTBEAT", interval=10080, payload={"endpoint": endpoint.url}
        )
        run_to_end(user, workflow["id"], 1)
        assert user.trigger(workflow["id"]).status_code in (200, 201, 202)
        run_to_end(user, workflow["id"], 2)
        endpoint.status = 200
        for count in (3, 4):
            assert user.trigger(workflow["id"]).status_code in (200, 201, 202)
            run_to_end(user, workflow["id"], count)
        statuses = [j["status"] for j in reversed(user.jobs(workflow["id"]))]
        assert statuses == ["FAILED", "FAILED", "COMPLETED", "COMPLETED"], stack.logs()
        receiver.wait_for(2, timeout_s=30)
        time.sleep(2)  # nothing else arrives
        assert all(r.error is None for r in receiver.received), [r.error for r in receiver.received]
        payloads = receiver.verified()
    assert [p["type"] for p in payloads] == ["workflow.failing", "workflow.recovered"]
    failing, recovered = payloads
    assert failing["data"]["workflow_id"] == workflow["id"]
    assert failing["data"]["workflow_name"] == "flaky"
    assert failing["data"]["status"] == "FAILED"
    assert recovered["data"]["status"] == "COMPLETED"
    assert set(failing["data"]) == {
        "workflow_id",
        "workflow_name",
        "job_id",
        "status",
        "error",
        "consecutive_failures",
        "url",
    }
    deliveries = user.http.get(f"/webhooks/{hook.json()['id']}/deliveries").json()["deliveries"]
    assert [(d["event"], d["status"]) for d in deliveries] == [
        ("workflow.recovered", "DELIVERED"),
        ("workflow.failing", "DELIVERED"),
    ]
    user.close()


def test_a_hanging_receiver_is_retried_while_jobs_keep_running(
    stack: Stack, endpoint: Endpoint
) -> None:
    user = ApiUser(stack.api)
    with Receiver(then="hang", hang_s=60).serving() as receiver:
        hook = user.http.post("/webhooks", json={"url": receiver.url, "events": EVENTS})
        assert hook.status_code == 201, hook.text
        receiver.secret = hook.json()["secret"]
        endpoint.status = 500
        workflow = user.create(
            name="flaky", kind="HEARTBEAT", interval=10080, payload={"endpoint": endpoint.url}
        )
        run_to_end(user, workflow["id"], 1)
        receiver.wait_for(1, timeout_s=30)  # workflow.failing: the receiver now hangs
        endpoint.status = 200
        started = time.monotonic()
        for count in range(2, 7):
            assert user.trigger(workflow["id"]).status_code in (200, 201, 202)
            run_to_end(user, workflow["id"], count)
        # Five jobs ran one after another while the only webhook sender hung, 2 s at a time.
        assert time.monotonic() - started < 30
        # Retried after the timeout. Polled on the delivery itself: the receiver's second
        # request may be the `workflow.recovered` delivery, sent before the retry's backoff ends.
        deadline = time.monotonic() + 45
        while True:
            deliveries = user.http.get(f"/webhooks/{hook.json()['id']}/deliveries").json()[
                "deliveries"
            ]
            failing = next(d for d in deliveries if d["event"] == "workflow.failing")
            if failing["attempts"] >= 2 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    assert failing["attempts"] >= 2
    assert "no answer within 2 s" in failing["attempt_log"][0]["error"]
    user.close()
