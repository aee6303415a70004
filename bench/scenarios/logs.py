"""Scenario 5: logs. Ingest rate, and live latency from a container's print to SSE receipt.

A CONTAINER job (local/python:3.11) waits a second (so the follower is connected), then prints
numbered lines, each with `time.time_ns()` at print. The bench follows the job's SSE stream over
HTTP as a user would, noting when each line arrives, and polls Postgres for the stored lines.

- Burst: 100,000 lines as fast as Python prints them. Lines/s = lines / (first line's print time
  until the last line is stored). The live latency of a burst is mostly queueing behind it.
- Paced: 5,000 lines at 1,000 lines/s, each flushed; its latency is the live-view latency the
  target is about.
- Raw: the burst's container again, created and attached through the Docker API alone (as the
  execution worker attaches), its output counted and discarded: lines/s from the first line's
  print time until the last line is read. The baseline of the burst's ingest: what any reader of
  a container's output gets on this machine.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import docker

from bench.api import ApiUser
from bench.context import BenchContext, FullStack
from bench.database import QUERIES
from bench.environment import BenchError
from bench.measure import percentile, wait_for
from bench.results import Compare, Metric, ScenarioResult, Subject, Target
from bench.watch import FinishWatcher
from chronoverse.payloads import DEFAULT_CPUS

NAME = "logs"
IMAGE = "local/python:3.11"
BURST_LINES = 100_000
PACED_LINES = 5_000
PACED_RATE = 1_000.0
REPEATS = 5
START_DELAY_S = 1.0
RAW_BASELINE = "Docker API, read and discarded"
# argv: delay, lines, rate (0: as fast as possible). Each line: "<n> <time_ns at print>".
SCRIPT = """
import sys, time
delay, lines, rate = float(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
time.sleep(delay)
write, now = sys.stdout.write, time.time_ns
if rate <= 0:
    for n in range(lines):
        write(f"{n} {now()}\\n")
else:
    start = time.monotonic()
    for n in range(lines):
        ahead = start + n / rate - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
        write(f"{n} {now()}\\n")
        sys.stdout.flush()
"""


@dataclass(kw_only=True)
class Follow:
    """What the SSE follower saw: (receive time ns, raw event data) per line."""

    events: list[tuple[int, str]] = field(default_factory=list)
    error: BaseException | None = None


@dataclass(frozen=True, kw_only=True)
class LogRun:
    lines_per_s: float
    p50_ms: float
    p99_ms: float


def run(ctx: BenchContext) -> ScenarioResult:
    burst_lines = ctx.scaled(BURST_LINES)
    paced_lines = ctx.scaled(PACED_LINES)
    repeats = ctx.repeats(REPEATS)
    full = ctx.full_stack()
    user = ApiUser(full.stack.api)
    burst: list[LogRun] = []
    paced: list[LogRun] = []
    raw: list[float] = []
    client = docker.from_env()
    try:
        with FinishWatcher(full.database_url, interval_s=0.05) as watcher:
            for repeat in range(repeats):
                burst.append(_run_once(full, user, watcher, burst_lines, 0.0))
                paced.append(_run_once(full, user, watcher, paced_lines, PACED_RATE))
                raw.append(_raw_once(client, burst_lines))
                ctx.progress(
                    f"{NAME} {repeat + 1}/{repeats}: burst {burst[-1].lines_per_s:,.0f} lines/s "
                    f"(latency p50 {burst[-1].p50_ms:,.0f} ms, p99 {burst[-1].p99_ms:,.0f} ms); "
                    f"paced p50 {paced[-1].p50_ms:.0f} ms, p99 {paced[-1].p99_ms:.0f} ms; "
                    f"raw Docker API {raw[-1]:,.0f} lines/s"
                )
    finally:
        client.close()
        user.close()
    ingest = tuple(r.lines_per_s for r in burst)
    return ScenarioResult(
        name=NAME,
        title="Logs",
        setup=(
            f"A CONTAINER job in {IMAGE} prints lines `<n> <time_ns>`; the bench follows "
            "/workflows/{id}/jobs/{id}/logs/stream (SSE) over HTTP and polls job_logs. Burst: "
            f"{burst_lines:,} lines as fast as Python writes them; lines/s from the first "
            "line's print time to the moment all are stored in Postgres. Paced: "
            f"{paced_lines:,} lines at {PACED_RATE:,.0f} lines/s, each flushed. Latency: SSE "
            "receipt time minus the time printed in the line. Raw baseline: the burst's "
            "container (network none, the default CPU limit) created, attached (stream, logs, "
            "demux, as the execution worker attaches) and started through the Docker API in "
            "the bench's process, its lines counted and discarded; lines/s from the first "
            f"line's print time to the last line read. {repeats} repeats, interleaved."
        ),
        config={
            "burst_lines": burst_lines,
            "paced_lines": paced_lines,
            "paced_rate": PACED_RATE,
            "repeats": repeats,
            **ctx.full_stack_config(),
        },
        metrics=[
            Metric(
                scenario=NAME,
                name="ingest, burst (print to stored)",
                unit="lines/s",
                samples=ingest,
                target=Target(compare=Compare.AT_LEAST, value=100_000),
            ),
            Metric(
                scenario=NAME,
                name="ingest, burst, against the Docker API alone",
                unit="lines/s",
                samples=ingest,
                baseline_samples=tuple(raw),
                baseline_name=RAW_BASELINE,
                target=Target(compare=Compare.AT_LEAST, value=0.5, subject=Subject.RATIO),
            ),
            Metric(
                scenario=NAME,
                name=f"live latency p50, paced {PACED_RATE:,.0f} lines/s",
                unit="ms",
                samples=tuple(r.p50_ms for r in paced),
            ),
            Metric(
                scenario=NAME,
                name=f"live latency p99, paced {PACED_RATE:,.0f} lines/s",
                unit="ms",
                samples=tuple(r.p99_ms for r in paced),
                target=Target(compare=Compare.AT_MOST, value=100),
            ),
            Metric(
                scenario=NAME,
                name="live latency p50, burst",
                unit="ms",
                samples=tuple(r.p50_ms for r in burst),
            ),
            Metric(
                scenario=NAME,
                name="live latency p99, burst",
                unit="ms",
                samples=tuple(r.p99_ms for r in burst),
                target=Target(compare=Compare.AT_MOST, value=1000),
                note="queueing: the burst is printed far faster than it is stored and streamed",
            ),
        ],
    )


def _run_once(
    full: FullStack, user: ApiUser, watcher: FinishWatcher, lines: int, rate: float
) -> LogRun:
    workflow = user.create_workflow(
        name="bench-logs",
        kind="CONTAINER",
        interval=10080,
        payload={
            "image": IMAGE,
            "command": ["python3", "-c", SCRIPT],
            "args": [str(START_DELAY_S), str(lines), str(rate)],
        },
    )
    workflow_id = str(workflow["id"])
    # The build's first automatic run is the measured one.
    row = wait_for(
        lambda: full.conn.execute(QUERIES.first_job, {"workflow_id": workflow_id}).fetchone(),
        timeout_s=60,
        interval_s=0.01,
        what="the logging job",
    )
    job_id = str(row["id"])
    follow = Follow()
    follower = threading.Thread(
        target=_follow, args=(user.follow_logs(workflow_id, job_id), follow), daemon=True
    )
    follower.start()

    def all_stored() -> int | None:
        count = full.conn.execute(QUERIES.count_log_lines, {"job_id": job_id}).fetchone()
        return time.time_ns() if count and count["n"] >= lines else None

    stored_at = wait_for(all_stored, timeout_s=600, interval_s=0.02, what=f"{lines} stored lines")
    finished = watcher.wait(job_id, timeout_s=120)
    if finished.status != "COMPLETED":
        raise BenchError(f"logging job {job_id} {finished.status}: {finished.error}")
    follower.join(timeout=300)
    if follow.error is not None:
        raise BenchError(f"following the logs of {job_id} failed: {follow.error}") from follow.error
    printed, latencies = _latencies(follow.events)
    if len(latencies) != lines:
        raise BenchError(f"SSE delivered {len(latencies)} of {lines} lines of job {job_id}")
    return LogRun(
        lines_per_s=lines / ((stored_at - min(printed)) / 1e9),
        p50_ms=percentile(latencies, 50),
        p99_ms=percentile(latencies, 99),
    )


def _raw_once(client: docker.DockerClient, lines: int) -> float:
    """The burst read straight from Docker: lines/s from the first line's print to the last read."""
    container = client.containers.create(
        image=IMAGE,
        command=["python3", "-c", SCRIPT, str(START_DELAY_S), str(lines), "0"],
        network_mode="none",
        nano_cpus=int(DEFAULT_CPUS * 1_000_000_000),
        labels={"bench": f"{NAME}-raw-{uuid.uuid4().hex[:8]}"},
        detach=True,
    )
    try:
        # Attach before start, so not a byte is missed (as the execution worker does).
        stream = client.api.attach(
            str(container.id), stdout=True, stderr=True, stream=True, logs=True, demux=True
        )
        container.start()
        head = b""  # the output up to the first newline: the first line's print time
        count = 0
        last_read = 0
        try:
            for out, _err in stream:
                if not out:
                    continue
                last_read = time.time_ns()
                if count == 0:
                    head += out.partition(b"\n")[0]
                count += out.count(b"\n")
        finally:
            stream.close()
        status = container.wait()
    finally:
        container.remove(force=True)
    if status.get("StatusCode") != 0 or count != lines:
        raise BenchError(f"the raw-log container exited {status} after {count} of {lines} lines")
    printed = int(head.split()[1])
    return lines / ((last_read - printed) / 1e9)


def _follow(events: Iterator[tuple[int, str]], into: Follow) -> None:
    try:
        for event in events:
            into.events.append(event)
    except Exception as exc:  # reported by the caller, with the job
        into.error = exc


def _latencies(events: list[tuple[int, str]]) -> tuple[list[int], list[float]]:
    """Print times (ns) of the lines, and each line's print-to-receipt latency in ms."""
    printed: list[int] = []
    latencies: list[float] = []
    for received, data in events:
        _, stamp = json.loads(data)["line"].split()
        printed.append(int(stamp))
        latencies.append((received - int(stamp)) / 1e6)
    return printed, latencies
