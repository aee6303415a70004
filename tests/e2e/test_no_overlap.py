"""A killed execution worker's container job: the retry starts only once the dead attempt's
container is gone, and the dead attempt's output is kept as that attempt's."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import docker
import psycopg
import pytest

from chronoverse.definitions import LABEL_ATTEMPT, LABEL_INSTALLATION, LABEL_JOB
from chronoverse.kafka.admin import ensure_topics
from chronoverse.settings import KafkaSettings
from tests.conftest import wait_until
from tests.e2e.stack import ApiUser, Stack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

FINAL = {"COMPLETED", "FAILED", "CANCELED"}
LINES = 100  # 20 s: the dead attempt still runs when the retry is claimed


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
        CHRONOVERSE_STOP_GRACE_S="1",
        # No reaper pass during the test: only the retry's own clearing may remove the container.
        CHRONOVERSE_REAPER_INTERVAL_S="600",
    )
    settings = KafkaSettings.from_environ(stack.env)
    ensure_topics(settings, settings.all_topics())
    try:
        for name in ("server", "scheduling-worker", "workflow-worker", "log-processor"):
            stack.start(name, name)
        stack.start("exec-1", "execution-worker")
        yield stack
    finally:
        stack.stop_all()
        client = docker.from_env()
        try:
            label = f"{LABEL_INSTALLATION}={stack.env['CHRONOVERSE_INSTALLATION']}"
            for container in client.containers.list(all=True, filters={"label": label}):
                container.remove(force=True)  # left by a failed run
        finally:
            client.close()


def stored(stack: Stack, job_id: str, attempt: int) -> list[tuple[int, str]]:
    with psycopg.connect(stack.env["CHRONOVERSE_DATABASE_URL"]) as conn:
        rows = conn.execute(
            "SELECT seq, line FROM job_logs WHERE job_id = %s AND attempt = %s ORDER BY seq",
            (job_id, attempt),
        ).fetchall()
    return [(row[0], row[1]) for row in rows]


def logs_closed(stack: Stack, job_id: str) -> tuple[int | None, bool]:
    with psycopg.connect(stack.env["CHRONOVERSE_DATABASE_URL"]) as conn:
        row = conn.execute(
            "SELECT logs_attempt, logs_closed_at IS NOT NULL FROM jobs WHERE id = %s", (job_id,)
        ).fetchone()
    assert row is not None
    return row[0], row[1]


def test_the_retry_of_a_killed_worker_s_job_never_overlaps_the_dead_attempt(stack: Stack) -> None:
    user = ApiUser(stack.api)
    since = int(time.time()) - 1
    workflow = user.create(
        name="count",
        kind="CONTAINER",
        interval=10080,
        payload={
            "image": "local/busybox:latest",
            "command": [
                "sh",
                "-c",
                f"for i in $(seq 1 {LINES}); do echo line $i; sleep 0.2; done",
            ],
        },
    )
    [job] = wait_until(
        lambda: [j for j in user.jobs(workflow["id"]) if j["status"] == "RUNNING"],
        timeout_s=60,
        message="the job to run",
    )
    job_id = job["id"]
    wait_until(
        lambda: len(stored(stack, job_id, 1)) >= 3, timeout_s=30, message="attempt 1's first lines"
    )
    stack.kill("exec-1")  # SIGKILL: its container runs on
    printed_by_then = len(stored(stack, job_id, 1))
    stack.start("exec-2", "execution-worker")

    def final() -> dict[str, Any] | None:
        jobs = user.jobs(workflow["id"])
        return jobs[0] if jobs and jobs[0]["status"] in FINAL else None

    done = wait_until(final, timeout_s=120, message="the retry to finish")
    assert (done["status"], done["attempt"]) == ("COMPLETED", 2), stack.logs()
    wait_until(
        lambda: logs_closed(stack, job_id) == (2, True),
        timeout_s=60,
        message="attempt 2's log to end",
    )

    client = docker.from_env()
    try:
        assert client.containers.list(all=True, filters={"label": f"{LABEL_JOB}={job_id}"}) == []
        events = list(
            client.events(
                since=since,
                until=int(time.time()) + 1,
                filters={"type": "container", "label": f"{LABEL_JOB}={job_id}"},
                decode=True,
            )
        )
    finally:
        client.close()

    def when(action: str, attempt: int) -> list[int]:
        return [
            int(e["timeNano"])
            for e in events
            if e["Action"] == action and e["Actor"]["Attributes"].get(LABEL_ATTEMPT) == str(attempt)
        ]

    # Docker's own record: attempt 1's container was gone before attempt 2's started.
    [first_gone] = when("destroy", 1)
    [second_started] = when("start", 2)
    assert first_gone < second_started, events

    # Attempt 1's output is stored as attempt 1's: its lines in order, numbered as printed,
    # including what it printed after its worker died; attempt 2's lines are its own.
    first = stored(stack, job_id, 1)
    assert first == [(i, f"line {i + 1}") for i in range(len(first))]
    assert printed_by_then + 4 <= len(first) < LINES, (printed_by_then, len(first), events)
    assert stored(stack, job_id, 2) == [(i, f"line {i + 1}") for i in range(LINES)]
    user.close()
