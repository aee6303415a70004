"""Scenario 7: live viewers. The API's latency while many SSE viewers follow one job's log.

A stack of its own (one server process; CHRONOVERSE_MAX_STREAMS_PER_USER above the viewer count)
runs a CONTAINER job in local/busybox that prints a line every 50 ms for the whole repeat. While
it prints, the bench makes ordinary authenticated calls one after the other for MEASURE_S
(`GET /workflows/{id}` and `GET /workflows?limit=20`, alternately), three times: with no viewer,
then with 100 viewers of the job's live log, then with 1,000 (900 more). The viewers come from a
few client processes (bench.viewers) and follow the stream until its end, each checking it got
every line once and in order; a few note each line's delivery latency. Meanwhile the job's Redis
subscriptions are counted (PUBSUB NUMSUB): the server holds one for all of its viewers.

Reported: API p50 and p99 at each step, as a ratio to the same repeat's p99 (p50) with none;
delivery latency from the execution worker's read of the line to SSE receipt; how many viewers
got every line; the job's subscriptions.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import cast

import httpx
import redis

from bench.api import ApiUser
from bench.context import BenchContext
from bench.environment import BenchError
from bench.measure import percentile, wait_for
from bench.results import Compare, Metric, ScenarioResult, Subject, Target
from bench.stack import Service, Stack
from bench.viewers import ViewerProcesses, ViewersReport
from chronoverse.logs import live_channel

NAME = "viewers"
IMAGE = "local/busybox:latest"
STEPS = (100, 1_000)  # viewers at each step after the first (none); each adds client processes
CLIENTS = (1, 3)  # client processes that add a step's viewers
SAMPLED = 5  # viewers per client process that note every line's latency
MEASURE_S = 12.0  # calls per step: one after the other for this long
PAUSE_S = 0.01  # between two calls
LINE_EVERY_S = 0.05
JOB_S = 100.0  # the job prints for about this long: every step, the viewers connecting, slack
CONNECT_TIMEOUT_S = 120.0
REPEATS = 3


@dataclass(frozen=True, kw_only=True)
class Step:
    viewers: int
    calls: int
    p50_ms: float
    p99_ms: float
    live_p50_ms: float | None
    live_p99_ms: float | None


@dataclass(frozen=True, kw_only=True)
class Repeat:
    steps: list[Step]
    complete_pct: float
    subscriptions: int


def run(ctx: BenchContext) -> ScenarioResult:
    steps = tuple(ctx.scaled(n) for n in STEPS)
    repeats = ctx.repeats(REPEATS)
    stack, _ = ctx.new_stack(
        NAME,
        overrides={
            "CHRONOVERSE_MAX_STREAMS_PER_USER": str(steps[-1] + 10),
        },
    )
    results: list[Repeat] = []
    with stack:
        ctx.progress(f"starting a stack with one server process (logs in {stack.log_dir})")
        stack.start_all(
            [
                Service(name=name, service=name)
                for name in (
                    "server",
                    "scheduling-worker",
                    "workflow-worker",
                    "log-processor",
                    "execution-worker",
                )
            ]
        )
        for repeat in range(repeats):
            # A user per repeat: the last repeat's streams may hold their slots for a while
            # after their viewers left (the per-user stream limit would refuse new ones).
            user = ApiUser(stack.api)
            try:
                results.append(_repeat(ctx, stack, user, steps))
                ctx.progress(
                    f"{NAME} {repeat + 1}/{repeats}: "
                    + "; ".join(
                        f"{s.viewers:,} viewers p50 {s.p50_ms:.1f} ms, p99 {s.p99_ms:.1f} ms "
                        f"({s.calls} calls)"
                        for s in results[-1].steps
                    )
                    + f"; {results[-1].complete_pct:.1f}% of viewers got every line; "
                    f"{results[-1].subscriptions} Redis subscription(s)"
                )
            finally:
                user.close()
    return _result(results, steps, repeats)


def _repeat(ctx: BenchContext, stack: Stack, user: ApiUser, steps: tuple[int, ...]) -> Repeat:
    lines = round(JOB_S / LINE_EVERY_S)
    workflow = user.create_workflow(
        name="bench-viewers",
        kind="CONTAINER",
        interval=10080,
        payload={
            "image": IMAGE,
            "command": [
                "sh",
                "-c",
                f'i=0; while [ $i -lt {lines} ]; do echo "line $i"; i=$((i+1)); '
                f"sleep {LINE_EVERY_S}; done",
            ],
        },
    )
    workflow_id = str(workflow["id"])
    # The build's first automatic run is the job the viewers follow.
    job_id = wait_for(
        lambda: _running_job(user, workflow_id),
        timeout_s=90,
        interval_s=0.1,
        what="the printing job to run",
    )
    token = str(user.http.headers["Authorization"]).removeprefix("Bearer ")
    subscriptions = _Subscriptions(stack.env["CHRONOVERSE_REDIS_URL"], live_channel(job_id))
    clients: list[ViewerProcesses] = []
    measured: list[tuple[int, float, float, list[float]]] = []
    try:
        measured.append((0, *_measure(user, workflow_id)))
        for viewers, processes in zip(steps, CLIENTS, strict=True):
            clients.append(
                ViewerProcesses(
                    stack.api,
                    token,
                    workflow_id,
                    job_id,
                    viewers=viewers - measured[-1][0],  # those of the steps before stay
                    processes=processes,
                    sampled=SAMPLED,
                )
            )
            ctx.progress(f"{NAME}: {viewers:,} viewers connecting")
            clients[-1].wait_ready(CONNECT_TIMEOUT_S)
            measured.append((viewers, *_measure(user, workflow_id)))
        if not _still_running(user, workflow_id, job_id) or not all(c.running() for c in clients):
            raise BenchError(
                f"the job or the viewers ended before the last step was measured: raise JOB_S "
                f"({JOB_S:.0f}s)"
            )
        reports = [c.report(timeout_s=JOB_S + 120) for c in clients]
    finally:
        for client in clients:
            client.close()
        subscriptions.stop()
    report = ViewersReport.merge(reports)
    if report.failures:
        ctx.progress(f"{NAME}: viewer failures: {list(report.failures)[:3]}")
    return Repeat(
        steps=[
            _step(viewers, started, ended, latencies, report)
            for viewers, started, ended, latencies in measured
        ],
        complete_pct=100 * report.complete / report.viewers,
        subscriptions=subscriptions.most,
    )


def _step(
    viewers: int, started: float, ended: float, calls: list[float], report: ViewersReport
) -> Step:
    live = [ms for at, ms in report.latencies if started <= at <= ended]
    return Step(
        viewers=viewers,
        calls=len(calls),
        p50_ms=percentile(calls, 50),
        p99_ms=percentile(calls, 99),
        live_p50_ms=percentile(live, 50) if live and viewers else None,
        live_p99_ms=percentile(live, 99) if live and viewers else None,
    )


def _measure(user: ApiUser, workflow_id: str) -> tuple[float, float, list[float]]:
    """Calls one after the other for MEASURE_S: (start, end) in epoch seconds, and each call's
    latency in ms."""
    paths = [(f"/workflows/{workflow_id}", None), ("/workflows", {"limit": 20})]
    latencies: list[float] = []
    started = time.time()
    deadline = time.monotonic() + MEASURE_S
    while time.monotonic() < deadline:
        path, params = paths[len(latencies) % 2]
        began = time.perf_counter()
        response = user.http.get(path, params=params)
        latencies.append((time.perf_counter() - began) * 1000)
        if response.status_code != 200:
            raise BenchError(f"GET {path}: {response.status_code} {response.text[:200]}")
        time.sleep(PAUSE_S)
    return started, time.time(), latencies


def _running_job(user: ApiUser, workflow_id: str) -> str | None:
    jobs = _jobs(user, workflow_id)
    return str(jobs[0]["id"]) if jobs and jobs[0]["status"] == "RUNNING" else None


def _still_running(user: ApiUser, workflow_id: str, job_id: str) -> bool:
    return any(j["id"] == job_id and j["status"] == "RUNNING" for j in _jobs(user, workflow_id))


def _jobs(user: ApiUser, workflow_id: str) -> list[dict[str, str]]:
    try:
        response = user.http.get(f"/workflows/{workflow_id}/jobs", params={"limit": 5})
    except httpx.HTTPError as exc:
        raise BenchError(f"listing the jobs of {workflow_id} failed: {exc}") from exc
    if response.status_code != 200:
        raise BenchError(f"listing jobs: {response.status_code} {response.text[:200]}")
    return list(response.json()["jobs"])


class _Subscriptions:
    """The most subscribers the channel had, read every 0.25 s on a thread (PUBSUB NUMSUB)."""

    def __init__(self, redis_url: str, channel: str) -> None:
        self._client = redis.Redis.from_url(redis_url)
        self._channel = channel
        self._stop = threading.Event()
        self.most = 0
        self._thread = threading.Thread(target=self._run, name="numsub", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            [(_, count)] = cast(list[tuple[bytes, int]], self._client.pubsub_numsub(self._channel))
            self.most = max(self.most, int(count))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._client.close()


def _result(results: list[Repeat], steps: tuple[int, ...], repeats: int) -> ScenarioResult:
    def samples(i: int, attribute: str) -> tuple[float, ...]:
        values = (getattr(r.steps[i], attribute) for r in results)
        return tuple(v for v in values if v is not None)

    base_p50, base_p99 = samples(0, "p50_ms"), samples(0, "p99_ms")
    metrics = [
        Metric(scenario=NAME, name="API p50, no viewers", unit="ms", samples=base_p50),
        Metric(scenario=NAME, name="API p99, no viewers", unit="ms", samples=base_p99),
    ]
    for i, viewers in enumerate(steps, start=1):
        last = i == len(steps)
        metrics += [
            Metric(
                scenario=NAME,
                name=f"API p50, {viewers:,} viewers",
                unit="ms",
                samples=samples(i, "p50_ms"),
                baseline_samples=base_p50,
                baseline_name="no viewers",
            ),
            Metric(
                scenario=NAME,
                name=f"API p99, {viewers:,} viewers",
                unit="ms",
                samples=samples(i, "p99_ms"),
                baseline_samples=base_p99,
                baseline_name="no viewers",
                target=Target(compare=Compare.AT_MOST, value=100) if last else None,
            ),
        ]
    for i, viewers in enumerate(steps, start=1):
        metrics += [
            Metric(
                scenario=NAME,
                name=f"live latency p50, {viewers:,} viewers",
                unit="ms",
                samples=samples(i, "live_p50_ms"),
            ),
            Metric(
                scenario=NAME,
                name=f"live latency p99, {viewers:,} viewers",
                unit="ms",
                samples=samples(i, "live_p99_ms"),
                note="from the execution worker's read of the line to SSE receipt",
            ),
        ]
    metrics += [
        Metric(
            scenario=NAME,
            name="viewers that got every line, in order, and the end",
            unit="%",
            samples=tuple(r.complete_pct for r in results),
            target=Target(compare=Compare.AT_LEAST, value=100),
        ),
        Metric(
            scenario=NAME,
            name=f"Redis subscriptions for the job, {steps[-1]:,} viewers (most seen)",
            unit="subscriptions",
            samples=tuple(float(r.subscriptions) for r in results),
            target=Target(compare=Compare.AT_MOST, value=1, subject=Subject.OURS),
        ),
    ]
    return ScenarioResult(
        name=NAME,
        title="Live viewers",
        setup=(
            f"A stack with one server process; a CONTAINER job in {IMAGE} prints a line every "
            f"{LINE_EVERY_S * 1000:.0f} ms. While it prints, authenticated calls one after the "
            f"other for {MEASURE_S:.0f}s (GET /workflows/{{id}} and GET /workflows?limit=20, "
            f"alternately, {PAUSE_S * 1000:.0f} ms apart) with no viewer, then "
            + ", then ".join(f"{n:,}" for n in steps)
            + " SSE viewers of the job's log (from "
            + ", then ".join(str(sum(CLIENTS[: i + 1])) for i in range(len(steps)))
            + " client processes on the same machine). Each viewer follows to the end and "
            f"checks every line; {SAMPLED} per client process time each line. Ratios: p50 and "
            f"p99 at each step against the same repeat's with no viewer. {repeats} repeats."
        ),
        config={
            "viewers": list(steps),
            "client_processes": list(CLIENTS),
            "measure_s": MEASURE_S,
            "line_every_s": LINE_EVERY_S,
            "max_streams_per_user": steps[-1] + 10,
            "repeats": repeats,
            "server_processes": 1,
        },
        metrics=metrics,
    )
