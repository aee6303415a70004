"""A small client of the HTTP API, used by the CLI (and handy in scripts)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
from httpx_sse import connect_sse

from chronoverse.errors import ChronoverseError


class ApiError(ChronoverseError):
    """The API answered with an error (or could not be reached: status 0)."""

    def __init__(self, status: int, code: str, message: str, details: list[dict[str, str]]) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details


class Client:
    def __init__(self, base_url: str, *, token: str | None = None, timeout_s: float = 30.0) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout_s)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        try:
            response = self._http.request(method, path, json=json, params=params, headers=headers)
        except httpx.HTTPError as exc:
            raise ApiError(
                0, "unreachable", f"cannot reach {self._http.base_url}: {exc}", []
            ) from exc
        if response.status_code >= 400:
            self._raise(response)
        return response.json() if response.content else None

    @staticmethod
    def _raise(response: httpx.Response) -> None:
        try:
            error = response.json()["error"]
            code, message, details = error["code"], error["message"], error.get("details", [])
        except (ValueError, KeyError, TypeError):
            code, message, details = "http_error", response.text[:200], []
        raise ApiError(response.status_code, code, message, details)

    # --- auth -------------------------------------------------------------------------------------

    def register(self, email: str, password: str) -> Any:
        return self.request("POST", "/auth/register", json={"email": email, "password": password})

    def login(self, email: str, password: str) -> Any:
        return self.request("POST", "/auth/login", json={"email": email, "password": password})

    def logout(self) -> None:
        self.request("POST", "/auth/logout")

    # --- workflows --------------------------------------------------------------------------------

    def create_workflow(self, body: dict[str, Any], *, idempotency_key: str | None = None) -> Any:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return self.request("POST", "/workflows", json=body, headers=headers)

    def list_workflows(self, **params: Any) -> Any:
        return self.request(
            "GET", "/workflows", params={k: v for k, v in params.items() if v is not None}
        )

    def get_workflow(self, workflow_id: str) -> Any:
        return self.request("GET", f"/workflows/{workflow_id}")

    def update_workflow(self, workflow_id: str, changes: dict[str, Any]) -> Any:
        return self.request("PUT", f"/workflows/{workflow_id}", json=changes)

    def terminate_workflow(self, workflow_id: str) -> Any:
        return self.request("POST", f"/workflows/{workflow_id}/terminate")

    def delete_workflow(self, workflow_id: str) -> None:
        self.request("DELETE", f"/workflows/{workflow_id}")

    # --- schedules --------------------------------------------------------------------------------

    def pause_workflow(self, workflow_id: str) -> Any:
        return self.request("POST", f"/workflows/{workflow_id}/pause")

    def resume_workflow(self, workflow_id: str) -> Any:
        return self.request("POST", f"/workflows/{workflow_id}/resume")

    def workflow_schedule(
        self, workflow_id: str, *, count: int | None = None, start: str | None = None
    ) -> Any:
        """The workflow's next runs at or after ``start`` (RFC 3339; default now)."""
        return self.request(
            "GET", f"/workflows/{workflow_id}/schedule", params=_preview_params(count, start)
        )

    def preview_schedule(
        self, schedule: dict[str, Any], *, count: int | None = None, start: str | None = None
    ) -> Any:
        """The next runs of ``schedule`` (``interval``, or ``cron`` with ``timezone`` and
        ``dst``), saving nothing."""
        return self.request(
            "POST", "/schedules/preview", json=schedule, params=_preview_params(count, start)
        )

    def list_fires(self, workflow_id: str, **params: Any) -> Any:
        """One page of the fire ledger, newest first (``limit``, ``cursor``)."""
        return self.request(
            "GET",
            f"/workflows/{workflow_id}/fires",
            params={k: v for k, v in params.items() if v is not None},
        )

    # --- jobs -------------------------------------------------------------------------------------

    def run_workflow(self, workflow_id: str, *, idempotency_key: str | None = None) -> Any:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return self.request("POST", f"/workflows/{workflow_id}/jobs", headers=headers)

    def list_jobs(self, workflow_id: str, **params: Any) -> Any:
        return self.request(
            "GET",
            f"/workflows/{workflow_id}/jobs",
            params={k: v for k, v in params.items() if v is not None},
        )

    def get_job(self, workflow_id: str, job_id: str) -> Any:
        return self.request("GET", f"/workflows/{workflow_id}/jobs/{job_id}")

    def job_events(self, workflow_id: str, job_id: str) -> Any:
        return self.request("GET", f"/workflows/{workflow_id}/jobs/{job_id}/events")

    # --- analytics ------------------------------------------------------------------------------

    def analytics(self, *, workflow_id: str | None = None, since: str | None = None) -> Any:
        """The caller's figures, or one workflow's, over the jobs created since ``since``
        (RFC 3339; default: the server's, 7 days)."""
        path = f"/workflows/{workflow_id}/analytics" if workflow_id else "/analytics"
        return self.request("GET", path, params={"since": since} if since else None)

    # --- notifications and profile ----------------------------------------------------------------

    def list_notifications(self, **params: Any) -> Any:
        """One page of the caller's notifications, newest first (``unread``, ``limit``,
        ``cursor``)."""
        return self.request(
            "GET", "/notifications", params={k: v for k, v in params.items() if v is not None}
        )

    def mark_notifications_read(self, ids: list[str] | None = None) -> Any:
        """Mark these notifications read, or (``ids`` None) every unread one shown."""
        body: dict[str, Any] = {"all": True} if ids is None else {"ids": ids}
        return self.request("POST", "/notifications/read", json=body)

    def profile(self) -> Any:
        return self.request("GET", "/users/me")

    def update_profile(self, changes: dict[str, Any]) -> Any:
        return self.request("PATCH", "/users/me", json=changes)

    # --- webhooks ---------------------------------------------------------------------------------

    def create_webhook(self, url: str, events: list[str], workflow_id: str | None = None) -> Any:
        """A new endpoint; the result carries its signing secret, shown only this once."""
        body: dict[str, Any] = {"url": url, "events": events}
        if workflow_id is not None:
            body["workflow_id"] = workflow_id
        return self.request("POST", "/webhooks", json=body)

    def list_webhooks(self, *, limit: int | None = None, cursor: str | None = None) -> Any:
        params = {"limit": limit, "cursor": cursor}
        return self.request(
            "GET", "/webhooks", params={k: v for k, v in params.items() if v is not None}
        )

    def delete_webhook(self, webhook_id: str) -> None:
        self.request("DELETE", f"/webhooks/{webhook_id}")

    def webhook_deliveries(
        self, webhook_id: str, *, limit: int | None = None, cursor: str | None = None
    ) -> Any:
        params = {"limit": limit, "cursor": cursor}
        return self.request(
            "GET",
            f"/webhooks/{webhook_id}/deliveries",
            params={k: v for k, v in params.items() if v is not None},
        )

    # --- volumes ----------------------------------------------------------------------------------

    def list_volumes(self) -> Any:
        return self.request("GET", "/volumes")

    def delete_volume(self, name: str) -> None:
        self.request("DELETE", f"/volumes/{name}")

    # --- logs -------------------------------------------------------------------------------------

    def log_page(
        self,
        job_id: str,
        *,
        attempt: int | None = None,
        cursor: str | None = None,
        limit: int = 1000,
        stream: str | None = None,
        q: str | None = None,
    ) -> Any:
        """One page of one attempt's lines (default: the latest attempt); only ``stream``'s and
        only those containing ``q`` (case-insensitive), when given."""
        params: dict[str, Any] = {"limit": limit}
        if attempt is not None:
            params["attempt"] = attempt
        if cursor:
            params["cursor"] = cursor
        if stream is not None:
            params["stream"] = stream
        if q is not None:
            params["q"] = q
        return self.request("GET", f"/jobs/{job_id}/logs", params=params)

    def download_logs(
        self,
        job_id: str,
        *,
        format: str = "txt",
        attempt: int | None = None,
        stream: str | None = None,
        q: str | None = None,
    ) -> Iterator[bytes]:
        """A job's log as a file (``txt``, ``json`` or ``jsonl``), as its bytes arrive."""
        params: dict[str, Any] = {"format": format}
        for name, value in (("attempt", attempt), ("stream", stream), ("q", q)):
            if value is not None:
                params[name] = value
        try:
            with self._http.stream(
                "GET",
                f"/jobs/{job_id}/logs/download",
                params=params,
                timeout=httpx.Timeout(30, read=None),
            ) as response:
                if response.status_code >= 400:
                    response.read()
                    self._raise(response)
                yield from response.iter_bytes()
        except httpx.HTTPError as exc:
            raise ApiError(
                0, "unreachable", f"cannot download from {self._http.base_url}: {exc}", []
            ) from exc

    def follow_logs(
        self, job_id: str, *, attempt: int | None = None, after: int = -1
    ) -> Iterator[dict[str, Any]]:
        """A job's log as it comes (SSE), from the latest attempt (or ``attempt``).

        Yields each line (``{"attempt", "seq", "stream", "ts", "line"}``), ``{"attempt_start":
        n}`` when the job was retried and attempt n's lines follow, and last ``{"end": {"attempt",
        "last_seq", "incomplete"}}``. Resumes after a dropped connection from the last event
        received.
        """
        last_id: str | None = None
        while True:
            params: dict[str, Any] = {}
            if last_id is None:
                if attempt is not None:
                    params["attempt"] = attempt
                if after >= 0:
                    params["after"] = after
            headers = {"Last-Event-ID": last_id} if last_id is not None else {}
            try:
                with connect_sse(
                    self._http,
                    "GET",
                    f"/jobs/{job_id}/logs/stream",
                    params=params,
                    headers=headers,
                    timeout=httpx.Timeout(30, read=None),
                ) as source:
                    if source.response.status_code >= 400:
                        source.response.read()
                        self._raise(source.response)
                    for event in source.iter_sse():
                        if event.event == "log":
                            last_id = event.id
                            yield json.loads(event.data)
                        elif event.event == "attempt":
                            last_id = event.id
                            yield {"attempt_start": json.loads(event.data)["attempt"]}
                        elif event.event == "end":
                            yield {"end": json.loads(event.data)}
                            return
            except httpx.TransportError:
                continue  # reconnect and resume after the last event received


def _preview_params(count: int | None, start: str | None) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if count is not None:
        params["count"] = count
    if start is not None:
        params["from"] = start
    return params
