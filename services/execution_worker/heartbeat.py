"""Running a HEARTBEAT job: nothing for a liveness job, else one HTTP request and a status check.

The endpoint passes the egress guard first (:mod:`chronoverse.egress`), and the request goes to
an address that was checked (:mod:`services.execution_worker.pinned`). What each failure means
for the job is decided in :mod:`services.execution_worker.results`.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from typing import Any

import httpx

from chronoverse.egress import Destination, EgressPolicy, Resolver, check_endpoint
from chronoverse.errors import EgressRefused, UnresolvableHostError
from chronoverse.payloads import HeartbeatPayload
from chronoverse.scheduling import RunResult
from services.execution_worker import pinned, results

logger = logging.getLogger(__name__)
USER_AGENT = "chronoverse-heartbeat/1"


def http_client(*, max_connections: int) -> httpx.Client:
    """The worker's client for HEARTBEAT requests, whose connection pool and TLS context are made
    at the first request: a worker that runs only liveness jobs and CONTAINERs never loads httpcore
    or the CA bundle (2.6 MiB at rest)."""
    # trust_env=False: HTTP(S)_PROXY / ALL_PROXY from the environment would send heartbeats
    # through a proxy, which then connects to addresses the egress guard never checked.
    limits = httpx.Limits(max_connections=max_connections)
    return httpx.Client(
        transport=OnDemandTransport(lambda: httpx.HTTPTransport(trust_env=False, limits=limits)),
        follow_redirects=False,
        trust_env=False,
    )


class OnDemandTransport(httpx.BaseTransport):
    """A transport made by ``make`` when the first request comes, then shared by all threads."""

    def __init__(self, make: Callable[[], httpx.BaseTransport]) -> None:
        self._make = make
        self._transport: httpx.BaseTransport | None = None
        self._lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        transport = self._transport
        if transport is None:
            with self._lock:
                if self._transport is None:
                    self._transport = self._make()
                transport = self._transport
        return transport.handle_request(request)

    def close(self) -> None:
        with self._lock:
            if self._transport is not None:
                self._transport.close()


def run_heartbeat(
    payload: HeartbeatPayload,
    client: httpx.Client,
    policy: EgressPolicy,
    resolver: Resolver = socket.getaddrinfo,
) -> RunResult:
    """Send the request; a refused or unreachable endpoint, a wrong status or a timeout is a USER
    failure."""
    if payload.is_liveness:
        return RunResult.success()  # nothing to run
    endpoint = payload.endpoint
    assert endpoint is not None
    try:
        destination = check_endpoint(policy, endpoint, resolver)
        url = httpx.URL(endpoint)
    except (EgressRefused, UnresolvableHostError, httpx.InvalidURL) as exc:
        if isinstance(exc, EgressRefused) and exc.public_reason != exc.reason:
            logger.warning(
                "HEARTBEAT to %s refused by the egress policy: %s",
                endpoint,
                exc.reason,
                extra={"action": "heartbeat_egress_refused"},
            )
        return results.endpoint_refused(exc, endpoint=endpoint)
    pinned_headers, extensions = pinned.host_and_tls(url, destination)
    headers = httpx.Headers({"User-Agent": USER_AGENT, **payload.headers})
    for name, value in pinned_headers.items():
        if name == "Connection" or name.lower() not in headers:
            headers[name] = value  # a Host the payload sets is kept
    try:
        status = _status(client, payload, url, destination, headers, extensions)
    except httpx.HTTPError as exc:
        return results.request_failed(exc, endpoint=endpoint, timeout_s=payload.timeout_seconds)
    return results.http_status(status, expected=payload.expected_status_code, endpoint=endpoint)


def _status(
    client: httpx.Client,
    payload: HeartbeatPayload,
    url: httpx.URL,
    destination: Destination,
    headers: httpx.Headers,
    extensions: dict[str, Any],
) -> int:
    """The response's status, from the first checked address that accepts the connection."""
    for target, last in pinned.targets(url, destination):
        try:
            # Stream: the status is all that is compared, so the body is never downloaded.
            with client.stream(
                payload.method,
                target,
                headers=headers,
                timeout=payload.timeout_seconds,
                extensions=extensions,
            ) as response:
                return response.status_code
        except httpx.ConnectError:
            # Refused or unreachable (say, no IPv6 route): try the next checked address.
            if last:
                raise
    raise AssertionError("a checked destination has at least one address")
