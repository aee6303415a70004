"""Many live viewers of one job cost the rest of the API (almost) nothing.

300 SSE viewers of one CONTAINER job's log, from 3 client processes, against one server process:
each must get every line exactly once and in order, and the end; the server holds one Redis
subscription for all of them; and 200 other authenticated calls made meanwhile stay fast. The
latency bound is loose on purpose (a shared 2-core machine); `make bench -s viewers` measures it.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable, Iterator, Mapping

import pytest
import redis

from bench.viewers import ViewerProcesses
from chronoverse.kafka.admin import ensure_topics
from chronoverse.settings import KafkaSettings
from tests.conftest import wait_until
from tests.e2e.stack import ApiUser, Stack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

VIEWERS = 300
CLIENTS = 3
LINES = 300


@pytest.fixture(scope="module")
def stack(
    environ: Mapping[str, str],
    empty_database_factory: Callable[..., str],
    migrated_template: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    stack = Stack(
        environ,
        empty_database_factory(template=migrated_template),
        tmp_path_factory.mktemp("viewers"),
        CHRONOVERSE_MAX_STREAMS_PER_USER=str(VIEWERS + 10),
        CHRONOVERSE_SSE_KEEPALIVE_S="5",
    )
    settings = KafkaSettings.from_environ(stack.env)
    ensure_topics(settings, settings.all_topics())
    try:
        for name in ("server", "scheduling-worker", "workflow-worker", "execution-worker"):
            stack.start(name, name)
        stack.start("log-processor", "log-processor")
        yield stack
    finally:
        stack.stop_all()


def test_300_viewers_get_every_line_and_the_api_stays_fast(stack: Stack) -> None:
    user = ApiUser(stack.api)
    workflow = user.create(
        name="chatty",
        kind="CONTAINER",
        interval=10080,
        payload={
            "image": "local/busybox:latest",
            "command": [
                "sh",
                "-c",
                f"sleep 3; for i in $(seq 1 {LINES}); do echo line $i; sleep 0.03; done",
            ],
        },
    )
    job = wait_until(
        lambda: (jobs := user.jobs(workflow["id"])) and jobs[0],
        timeout_s=90,
        message="the first job",
    )
    token = str(user.http.headers["Authorization"]).removeprefix("Bearer ")
    clients = ViewerProcesses(
        stack.api, token, workflow["id"], job["id"], viewers=VIEWERS, processes=CLIENTS
    )

    # While they stream: the server's subscriptions to the job's channel, and other calls.
    subscriptions: list[int] = []
    live = redis.Redis.from_url(stack.env["CHRONOVERSE_REDIS_URL"])
    channel = f"job_logs:{job['id']}"

    def count_subscriptions() -> None:
        while clients.running():
            subscriptions.append(int(live.pubsub_numsub(channel)[0][1]))
            time.sleep(0.5)

    with clients:
        counter = threading.Thread(target=count_subscriptions, daemon=True)
        counter.start()
        clients.wait_ready(timeout_s=60)  # every viewer connected and read a line
        latencies = []
        for _ in range(200):
            started = time.perf_counter()
            response = user.http.get(f"/workflows/{workflow['id']}")
            latencies.append(time.perf_counter() - started)
            assert response.status_code == 200
            time.sleep(0.02)
        report = clients.report(timeout_s=180)
    counter.join(timeout=5)
    user.close()

    assert not report.failures, report.failures[:5]
    assert report.ended == report.complete == VIEWERS
    assert report.lines == (LINES,) * VIEWERS
    # One subscription per server process, however many viewers.
    assert subscriptions and max(subscriptions) == 1, subscriptions
    p99 = statistics.quantiles(latencies, n=100)[98]
    print(
        f"\n{VIEWERS} viewers: other calls p50 {statistics.median(latencies) * 1000:.1f} ms, "
        f"p99 {p99 * 1000:.1f} ms"
    )
    # How fast is a target of the bench (`python -m bench -s viewers`), not an assertion here:
    # every call above had to answer (a server whose streams held its workers would time out).
