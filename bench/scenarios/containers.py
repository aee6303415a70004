"""Scenario 4: CONTAINER overhead against `docker run`.

One CONTAINER workflow runs `true` in local/busybox:latest. Sequentially, 50 times: trigger a
manual run over the HTTP API and wait until the job is COMPLETED (one thread polls the jobs table
every 5 ms), then time `docker run --rm local/busybox:latest true`; interleaved, so both see the
same machine. Reported: the median per-job wall time of each, and their ratio. Then 50 of each at
concurrency 4 (four client threads), as throughput.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from bench.api import ApiUser
from bench.context import BenchContext
from bench.database import QUERIES
from bench.environment import BenchError
from bench.measure import median, wait_for
from bench.results import Compare, Metric, ScenarioResult, Subject, Target
from bench.watch import FinishWatcher

NAME = "containers"
IMAGE = "local/busybox:latest"
JOBS = 50
CONCURRENCY = 4
REPEATS = 5
DOCKER_RUN = ("docker", "run", "--rm", IMAGE, "true")


def run(ctx: BenchContext) -> ScenarioResult:
    jobs = ctx.scaled(JOBS)
    repeats = ctx.repeats(REPEATS)
    full = ctx.full_stack()
    user = ApiUser(full.stack.api)
    ours_each: list[float] = []
    docker_each: list[float] = []
    ours_rate: list[float] = []
    docker_rate: list[float] = []
    try:
        # `network: bridge` is what `docker run` uses by default; Chronoverse's own default,
        # `none`, costs this Docker engine about 0.1 s more per container, which is not overhead.
        workflow = user.create_workflow(
            name="bench-true",
            kind="CONTAINER",
            interval=10080,
            payload={"image": IMAGE, "command": ["true"], "network": "bridge"},
        )
        workflow_id = str(workflow["id"])
        user.wait_built(workflow_id)
        with FinishWatcher(full.database_url) as watcher:
            # The build's first automatic run is the warm-up.
            first = wait_for(
                lambda: full.conn.execute(
                    QUERIES.first_job, {"workflow_id": workflow_id}
                ).fetchone(),
                timeout_s=60,
                interval_s=0.05,
                what="the first automatic job",
            )
            watcher.wait(str(first["id"]))
            _docker_run()

            def ours() -> float:
                started = time.perf_counter()
                job_id = user.trigger(workflow_id)
                finished = watcher.wait(job_id)
                if finished.status != "COMPLETED":
                    raise BenchError(f"job {job_id} {finished.status}: {finished.error}")
                return finished.seen_at - started

            for repeat in range(repeats):
                ours_times: list[float] = []
                docker_times: list[float] = []
                for _ in range(jobs):
                    ours_times.append(ours())
                    docker_times.append(_docker_run())
                ours_each.append(median(ours_times) * 1000)
                docker_each.append(median(docker_times) * 1000)
                ours_rate.append(_throughput(ours, jobs))
                docker_rate.append(_throughput(_docker_run, jobs))
                ctx.progress(
                    f"{NAME} {repeat + 1}/{repeats}: per job {ours_each[-1]:.0f} ms vs docker "
                    f"run {docker_each[-1]:.0f} ms; at concurrency {CONCURRENCY} "
                    f"{ours_rate[-1]:.1f} vs {docker_rate[-1]:.1f} jobs/s"
                )
    finally:
        user.close()
    return ScenarioResult(
        name=NAME,
        title="CONTAINER overhead",
        setup=(
            f"A CONTAINER workflow running `true` in {IMAGE} (network bridge, the `docker run` "
            "default; Chronoverse's limits and no-new-privileges as always). Per job: from the "
            "trigger request until the job is seen COMPLETED (jobs table polled every 5 ms); "
            f"baseline: wall time of `{' '.join(DOCKER_RUN)}`. {jobs} of each, interleaved, "
            f"sequentially (median per repeat); then {jobs} of each at concurrency {CONCURRENCY}. "
            f"{repeats} repeats."
        ),
        config={"jobs": jobs, "concurrency": CONCURRENCY, "repeats": repeats},
        metrics=[
            Metric(
                scenario=NAME,
                name="per-job wall time, sequential (median)",
                unit="ms",
                samples=tuple(ours_each),
                baseline_samples=tuple(docker_each),
                baseline_name="docker run",
                target=Target(compare=Compare.AT_MOST, value=1.05, subject=Subject.RATIO),
            ),
            Metric(
                scenario=NAME,
                name=f"throughput at concurrency {CONCURRENCY}",
                unit="jobs/s",
                samples=tuple(ours_rate),
                baseline_samples=tuple(docker_rate),
                baseline_name="docker run",
                target=Target(compare=Compare.AT_LEAST, value=1.0, subject=Subject.RATIO),
            ),
        ],
    )


def _docker_run() -> float:
    started = time.perf_counter()
    subprocess.run(DOCKER_RUN, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def _throughput(one: Callable[[], float], jobs: int) -> float:
    """Run ``one`` ``jobs`` times on CONCURRENCY threads; jobs per second of wall time."""
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=CONCURRENCY) as pool:
        for future in [pool.submit(one) for _ in range(jobs)]:
            future.result()
    return jobs / (time.perf_counter() - started)
