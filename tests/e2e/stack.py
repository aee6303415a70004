"""What an end-to-end test drives: the stack of real service processes (bench.stack, shared with
the bench), and a registered user of its HTTP API."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from bench.stack import Stack, free_port

__all__ = ["ApiUser", "Stack", "free_port"]


class ApiUser:
    """A registered user talking to the stack's HTTP API."""

    def __init__(self, api: str) -> None:
        self.http = httpx.Client(base_url=api, timeout=30)
        email = f"e2e-{uuid.uuid4().hex[:10]}@example.com"
        credentials = {"email": email, "password": "correct horse"}
        self.http.post("/auth/register", json=credentials).raise_for_status()
        token = self.http.post("/auth/login", json=credentials).json()["token"]
        self.http.headers["Authorization"] = f"Bearer {token}"

    def create(self, **body: Any) -> dict[str, Any]:
        response = self.http.post("/workflows", json=body)
        assert response.status_code == 201, response.text
        return dict(response.json())

    def workflow(self, workflow_id: str) -> dict[str, Any]:
        return dict(self.http.get(f"/workflows/{workflow_id}").json())

    def jobs(self, workflow_id: str) -> list[dict[str, Any]]:
        response = self.http.get(f"/workflows/{workflow_id}/jobs", params={"limit": 200})
        assert response.status_code == 200, response.text
        return list(response.json()["jobs"])

    def trigger(self, workflow_id: str) -> httpx.Response:
        return self.http.post(f"/workflows/{workflow_id}/jobs")

    def close(self) -> None:
        self.http.close()
