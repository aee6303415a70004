"""A registered user of the stack's HTTP API: workflows, manual runs and the live log stream."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
from httpx_sse import connect_sse

from bench.environment import BenchError


class ApiUser:
    def __init__(self, api: str) -> None:
        self.http = httpx.Client(base_url=api, timeout=30)
        credentials = {
            "email": f"bench-{uuid.uuid4().hex[:10]}@example.com",
            "password": "correct horse battery",
        }
        self.http.post("/auth/register", json=credentials).raise_for_status()
        response = self.http.post("/auth/login", json=credentials)
        response.raise_for_status()
        self.http.headers["Authorization"] = f"Bearer {response.json()['token']}"

    def close(self) -> None:
        self.http.close()

    def create_workflow(self, **body: Any) -> dict[str, Any]:
        response = self.http.post("/workflows", json=body)
        if response.status_code != 201:
            raise BenchError(f"creating a workflow failed: {response.status_code} {response.text}")
        return dict(response.json())

    def wait_built(self, workflow_id: str, *, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            state = self.http.get(f"/workflows/{workflow_id}").json()
            if state["build_status"] == "COMPLETED":
                return
            if state["build_status"] == "FAILED" or time.monotonic() > deadline:
                raise BenchError(f"workflow {workflow_id} did not build: {state}")
            time.sleep(0.05)

    def trigger(self, workflow_id: str) -> str:
        """Run the workflow now (a MANUAL job); its job id."""
        response = self.http.post(f"/workflows/{workflow_id}/jobs")
        if response.status_code != 201:
            raise BenchError(f"trigger failed: {response.status_code} {response.text}")
        return str(response.json()["id"])

    def follow_logs(self, workflow_id: str, job_id: str) -> Iterator[tuple[int, str]]:
        """The job's SSE stream: each log event's raw data with the time (ns) it was read."""
        url = f"/workflows/{workflow_id}/jobs/{job_id}/logs/stream"
        with connect_sse(self.http, "GET", url, timeout=httpx.Timeout(120)) as source:
            for event in source.iter_sse():
                if event.event == "log":
                    yield time.time_ns(), event.data
                elif event.event == "end":
                    return
        raise BenchError(f"the log stream of job {job_id} closed without its end event")
