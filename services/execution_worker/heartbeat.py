"""Running a HEARTBEAT job: nothing for a liveness job, else one HTTP request and a status check.

The endpoint passes the egress guard first (:mod:`chronoverse.egress`), and the request goes to
an address that was checked: the URL's host is replaced by that address, the Host header and TLS
(SNI and certificate check) keep the original name. A resolver that answers differently the next
time (DNS rebinding) therefore cannot steer the connection elsewhere. What each failure means for
the job is decided in :mod:`services.execution_worker.results`.
"""

from __future__ import annotations

import socket

import httpx

from chronoverse.egress import (
    Destination,
    EgressPolicy,
    Resolver,
    check_endpoint,
    parse_literal,
)
from chronoverse.errors import EgressRefused, UnresolvableHostError
from chronoverse.payloads import HeartbeatPayload
from chronoverse.scheduling import RunResult
from services.execution_worker import results

USER_AGENT = "chronoverse-heartbeat/1"


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
        return results.endpoint_refused(exc, endpoint=endpoint)
    headers = httpx.Headers({"User-Agent": USER_AGENT, **payload.headers})
    if "host" not in headers:
        headers["Host"] = url.netloc.decode("ascii")
    extensions: dict[str, str] = {}
    if url.scheme == "https":
        # The certificate is checked against the name, not the address connected to.
        literal = parse_literal(destination.host)
        sni = url.raw_host.decode("ascii") if literal is None else str(destination.address)
        extensions["sni_hostname"] = sni
        # The pool keys connections by address: a kept-alive connection verified for another
        # name on the same address must not carry this request.
        headers["Connection"] = "close"
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
    extensions: dict[str, str],
) -> int:
    """The response's status, from the first checked address that accepts the connection."""
    last = len(destination.addresses) - 1
    for index, address in enumerate(destination.addresses):
        target = url.copy_with(host=str(address), port=destination.port)
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
            if index == last:
                raise
    raise AssertionError("a checked destination has at least one address")
