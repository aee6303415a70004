"""Running a HEARTBEAT job: nothing for a liveness job, else one HTTP request and a status check.

The endpoint passes the egress guard first (:mod:`chronoverse.egress`), and the request goes to
an address that was checked: the URL's host is replaced by that address, the Host header and TLS
(SNI and certificate check) keep the original name. A resolver that answers differently the next
time (DNS rebinding) therefore cannot steer the connection elsewhere.

``job.error`` is shown to users: a failure is described in fixed words, never with text from the
peer (an exception's message may quote the bytes a non-HTTP service answered with).
"""

from __future__ import annotations

import socket
import ssl

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

USER_AGENT = "chronoverse-heartbeat/1"
BLOCKED = "blocked by the egress policy"


def run_heartbeat(
    payload: HeartbeatPayload,
    client: httpx.Client,
    policy: EgressPolicy,
    resolver: Resolver = socket.getaddrinfo,
) -> RunResult:
    """Send the request; a refused or unreachable endpoint, a wrong status or a timeout is a USER
    failure."""
    if payload.endpoint is None:
        return RunResult.success()
    try:
        destination = check_endpoint(policy, payload.endpoint, resolver)
        url = httpx.URL(payload.endpoint)
    except EgressRefused as exc:
        return RunResult.user_failure(f"{BLOCKED}: {exc.reason}")
    except UnresolvableHostError as exc:
        return RunResult.user_failure(f"request to {payload.endpoint} failed: {exc}")
    except httpx.InvalidURL:
        return RunResult.user_failure(f"{payload.endpoint} is not a valid URL")
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
    except httpx.TimeoutException:
        return RunResult.user_failure(f"timed out after {payload.timeout_seconds:g}s")
    except httpx.HTTPError as exc:
        return RunResult.user_failure(f"request to {payload.endpoint} failed: {describe(exc)}")
    if status != payload.expected_status_code:
        return RunResult.user_failure(
            f"expected HTTP {payload.expected_status_code} from {payload.endpoint}, got {status}"
        )
    return RunResult.success()


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


def describe(exc: httpx.HTTPError) -> str:
    """Fixed words for a failed request: never the exception's text, which may quote the peer."""
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    if isinstance(exc, httpx.ConnectError):
        if _caused_by(exc, ssl.SSLCertVerificationError):
            return "TLS failure: the server's certificate could not be verified"
        if _caused_by(exc, ssl.SSLError):
            return "TLS failure: the handshake did not succeed"
        if _caused_by(exc, ConnectionRefusedError):
            return "connection refused"
        return "could not connect"
    if isinstance(exc, httpx.ProtocolError):
        return "the peer did not answer with valid HTTP"
    if isinstance(exc, httpx.ReadError):
        return "the connection failed while reading the response"
    if isinstance(exc, httpx.WriteError):
        return "the connection failed while sending the request"
    if isinstance(exc, httpx.NetworkError):
        return "network error"
    if isinstance(exc, httpx.UnsupportedProtocol):
        return "the URL cannot be requested"
    return f"the request failed ({type(exc).__name__})"


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False
