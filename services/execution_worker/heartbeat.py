"""Running a HEARTBEAT job: nothing for a liveness job, else one HTTP request and a status check."""

from __future__ import annotations

import httpx

from chronoverse.payloads import HeartbeatPayload
from chronoverse.scheduling import RunResult

USER_AGENT = "chronoverse-heartbeat/1"


def run_heartbeat(payload: HeartbeatPayload, client: httpx.Client) -> RunResult:
    """Send the request; a wrong status, a timeout or an unreachable endpoint is a USER failure."""
    if payload.endpoint is None:
        return RunResult.success()
    headers = {"User-Agent": USER_AGENT, **payload.headers}
    try:
        # Stream: the status is all that is compared, so the body is never downloaded.
        with client.stream(
            payload.method, payload.endpoint, headers=headers, timeout=payload.timeout_seconds
        ) as response:
            status = response.status_code
    except httpx.TimeoutException:
        return RunResult.user_failure(f"timed out after {payload.timeout_seconds:g}s")
    except httpx.HTTPError as exc:
        return RunResult.user_failure(f"request to {payload.endpoint} failed: {exc}")
    if status != payload.expected_status_code:
        return RunResult.user_failure(
            f"expected HTTP {payload.expected_status_code} from {payload.endpoint}, got {status}"
        )
    return RunResult.success()
