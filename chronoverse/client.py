"""A small client of the HTTP API, used by the CLI (and handy in scripts)."""

from __future__ import annotations

from typing import Any

import httpx

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
            try:
                error = response.json()["error"]
                raise ApiError(
                    response.status_code, error["code"], error["message"], error.get("details", [])
                )
            except (ValueError, KeyError, TypeError) as exc:
                raise ApiError(response.status_code, "http_error", response.text[:200], []) from exc
        return response.json() if response.content else None

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
