"""TEMPORARY (helper 5): per-step timeline of sequential CONTAINER jobs. Deleted after use."""

from __future__ import annotations

import statistics
import threading
import time
from collections import defaultdict
from typing import Any

import docker
import pytest
from docker.utils import kwargs_from_env

from chronoverse.payloads import ContainerPolicy
from tests.integration import test_container_runs as t
from tests.integration.test_container_runs import conn, installation, make_worker, pool, producer  # noqa: F401

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]
marks: list[tuple[str, float, float]] = []


class Timing(docker.APIClient):
    pass


def timed(name: str, fn: Any) -> Any:
    def wrapper(*a: Any, **k: Any) -> Any:
        s = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            marks.append((name, s, time.perf_counter()))

    return wrapper


for meth in ("create_container", "inspect_container", "start", "wait", "remove_container", "containers", "_post"):
    setattr(Timing, meth, (lambda m: lambda self, *a, **k: timed(m, getattr(docker.APIClient, m))(self, *a, **k))(meth))


def test_timeline(conn: Any, make_worker: Any, monkeypatch: Any) -> None:
    client = docker.DockerClient(**kwargs_from_env())
    client.api.close()
    client.api = Timing(**kwargs_from_env())
    worker = make_worker(client=client)
    ex = worker.executor
    store = worker.store
    for name in ("claim", "set_container", "record"):
        monkeypatch.setattr(store, name, timed(name, getattr(store, name)))
    runner = ex._containers
    monkeypatch.setattr(runner, "_end_logs", timed("end_logs", runner._end_logs))
    monkeypatch.setattr(runner, "_definition", timed("definition", runner._definition))
    per: dict[str, list[float]] = defaultdict(list)
    totals = []
    for i in range(25):
        message = t.container_job(conn, ["true"])
        marks.clear()
        s = time.perf_counter()
        ex.execute(message)
        e = time.perf_counter()
        time.sleep(0.05)
        if i < 3:
            continue
        totals.append((e - s) * 1000)
        for name, a, b in marks:
            per[name].append((b - a) * 1000)
        if i == 10:
            for name, a, b in sorted(marks, key=lambda m: m[1]):
                print(f"  {name:18s} {1000*(a-s):7.1f} -> {1000*(b-s):7.1f} ({1000*(b-a):.1f})")
    print("execute total median", statistics.median(totals))
    for name, v in per.items():
        print(f"{name:18s} n={len(v)} median {statistics.median(v):.2f} ms")
    client.close()
