"""Dashboard pages at scale: how long the server takes to answer /ui/workflows for 1,000 workflows.

``python -m bench.dashboard_scale`` starts a server process of its own (bench.stack, on a scratch
database of the configured Postgres server, never the development or test database), registers
one user, creates ``--workflows`` workflows through the JSON API (half HEARTBEAT, half
CONTAINER; no worker runs, so nothing executes), signs in through the login form like a browser,
and times, one request after the other on loopback:

- the dashboard's workflows list: the first page (50), the largest (200), a name search and a
  kind filter;
- the JSON API's ``GET /workflows``, first page and largest, side by side, as the baseline
  (the ratio column compares each page with the API's page of the same size).

Times are the client's wall time of each whole request (so an upper bound on the server's render
time), median and p95 of ``--runs`` runs after ``--warmup``. Reported, never asserted: the
numbers go in docs/benchmarks.md (issue 18 asks under 50 ms for 1,000 workflows).
"""

from __future__ import annotations

import statistics
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import click
import httpx

from bench.environment import BenchError, Infrastructure
from bench.stack import Stack

PASSWORD = "correct horse battery"


@dataclass(frozen=True, kw_only=True)
class Timing:
    label: str
    path: str
    status: int
    bytes: int
    p50_ms: float
    p95_ms: float


def time_get(client: httpx.Client, label: str, path: str, *, runs: int, warmup: int) -> Timing:
    """Median and p95 wall time of ``GET path``, after ``warmup`` untimed requests."""
    for _ in range(warmup):
        client.get(path)
    times: list[float] = []
    status, size = 0, 0
    for _ in range(runs):
        started = time.perf_counter()
        response = client.get(path)
        times.append((time.perf_counter() - started) * 1000)
        status, size = response.status_code, len(response.content)
    times.sort()
    p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
    return Timing(
        label=label,
        path=path,
        status=status,
        bytes=size,
        p50_ms=statistics.median(times),
        p95_ms=p95,
    )


def create_workflows(api: httpx.Client, count: int) -> None:
    for i in range(count):
        if i % 2:
            body = {
                "name": f"check-{i:05d}",
                "kind": "HEARTBEAT",
                "interval": 10080,
                "payload": {"endpoint": "http://127.0.0.1:9/"},
            }
        else:
            body = {
                "name": f"nightly-{i:05d}",
                "kind": "CONTAINER",
                "interval": 10080,
                "payload": {"image": "local/busybox:latest", "command": ["true"]},
            }
        response = api.post("/workflows", json=body)
        if response.status_code != 201:
            raise BenchError(
                f"creating workflow {i} answered {response.status_code}: {response.text}"
            )


def measure(stack: Stack, count: int, runs: int, warmup: int) -> list[Timing]:
    email = f"dash-{uuid.uuid4().hex[:8]}@example.com"
    credentials = {"email": email, "password": PASSWORD}
    with httpx.Client(base_url=stack.api, timeout=60) as api:
        api.post("/auth/register", json=credentials).raise_for_status()
        token = api.post("/auth/login", json=credentials).json()["token"]
        api.headers["Authorization"] = f"Bearer {token}"
        started = time.perf_counter()
        create_workflows(api, count)
        click.echo(f"created {count} workflows in {time.perf_counter() - started:.1f} s")
        timings = [
            time_get(api, "API, first page", "/workflows", runs=runs, warmup=warmup),
            time_get(api, "API, largest page", "/workflows?limit=200", runs=runs, warmup=warmup),
        ]

    # The browser's way in: the login form, whose answer sets the session cookie.
    with httpx.Client(base_url=stack.api, timeout=60, headers={"Origin": stack.api}) as web:
        response = web.post("/ui/login", data=credentials)
        if "cv_session" not in web.cookies:
            raise BenchError(f"the login form set no session cookie ({response.status_code})")
        for label, path in (
            ("dashboard, first page", "/ui/workflows"),
            ("dashboard, largest page", "/ui/workflows?limit=200"),
            ("dashboard, name search", "/ui/workflows?name=nightly-0099"),
            ("dashboard, kind filter", "/ui/workflows?kind=CONTAINER"),
        ):
            timings.append(time_get(web, label, path, runs=runs, warmup=warmup))
    return timings


@click.command(name="python -m bench.dashboard_scale")
@click.option("--workflows", default=1000, show_default=True, help="Workflows of the one user.")
@click.option("--runs", default=50, show_default=True, help="Timed requests per page.")
@click.option("--warmup", default=5, show_default=True, help="Untimed requests first.")
def main(workflows: int, runs: int, warmup: int) -> None:
    infra = Infrastructure.from_environ({})
    infra.check()
    try:
        url = infra.create_database()
        with (
            tempfile.TemporaryDirectory(prefix="cv-dash-") as logs,
            Stack(infra.environ, url, Path(logs), label="dash") as stack,
        ):
            infra.create_topics(stack.topic_prefix)
            stack.start("server", "server")
            timings = measure(stack, workflows, runs, warmup)
    finally:
        infra.cleanup()
    api_first, api_largest = timings[0].p50_ms, timings[1].p50_ms
    click.echo(f"\n{workflows} workflows, {runs} runs each (client wall time on loopback)\n")
    click.echo("| request | status | bytes | p50 ms | p95 ms | p50 / the API's |")
    click.echo("|---|---:|---:|---:|---:|---:|")
    for t in timings:
        same_size = api_largest if "limit=200" in t.path else api_first
        click.echo(
            f"| {t.label} (`{t.path}`) | {t.status} | {t.bytes:,} | {t.p50_ms:.1f} "
            f"| {t.p95_ms:.1f} | {t.p50_ms / same_size:.2f} |"
        )


if __name__ == "__main__":
    main()
