"""Failure classification: what a container exit, a Docker error or an HTTP answer means for a job.

Pure: each function turns one fact about a run into a :class:`RunResult`, USER or SYSTEM. A USER
failure is the job's own (its exit code, its timeout, its image, payload or endpoint) and is
final; a SYSTEM failure is the worker's or Docker's and is retried
(:func:`chronoverse.scheduling.decide_outcome`).

``job.error`` is shown to users: an HTTP failure is described in fixed words, never with text from
the peer (an exception's message may quote the bytes a non-HTTP service answered with), and an
invalid payload by its field names, never its values (which may be plain secrets).
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from typing import Any

import httpx
from docker.errors import APIError, DockerException, ImageNotFound
from pydantic import ValidationError

from chronoverse.errors import EgressRefused, InvalidFieldsError, UnresolvableHostError
from chronoverse.payloads import field_errors
from chronoverse.scheduling import RunResult
from chronoverse.secrets import SecretError

BLOCKED = "blocked by the egress policy"

# --- any job ------------------------------------------------------------------------------------


def unreadable_secrets(exc: SecretError) -> RunResult:
    """The payload's sealed values do not open with this worker's keys: USER."""
    return RunResult.user_failure(f"cannot read the payload's secrets: {exc}")


def invalid_payload(exc: ValidationError) -> RunResult:
    """A stored payload that no longer validates: USER, named by field."""
    problems = "; ".join(
        f"{error.field} {error.message}" for error in field_errors(exc, prefix="payload")
    )
    return RunResult.user_failure(f"stored payload is invalid: {problems}")


def worker_error(exc: Exception) -> RunResult:
    """An exception nothing else expected: the worker's fault, SYSTEM."""
    return RunResult.system_failure(f"worker error: {exc}")


def no_container_runtime() -> RunResult:
    return RunResult.system_failure("this worker has no container runtime")


# --- CONTAINER jobs -----------------------------------------------------------------------------


def definition_error(
    exc: ImageNotFound | InvalidFieldsError | SecretError, *, image: object
) -> RunResult:
    """The definition could not be rebuilt from the stored payload: USER."""
    if isinstance(exc, ImageNotFound):
        return RunResult.user_failure(f"image {image} not found locally: {exc.explanation}")
    if isinstance(exc, InvalidFieldsError):
        return RunResult.user_failure(f"refused by the container policy: {exc}")
    return unreadable_secrets(exc)


def create_error(exc: DockerException, *, image: str) -> RunResult:
    """Docker refused to create the container: USER when the request was at fault (4xx)."""
    if isinstance(exc, ImageNotFound):
        return RunResult.user_failure(f"image {image} not found: {exc.explanation}")
    if isinstance(exc, APIError):
        if exc.is_client_error():
            return RunResult.user_failure(f"container rejected: {exc.explanation}")
        return RunResult.system_failure(f"docker: {exc.explanation}")
    return RunResult.system_failure(f"docker unavailable: {exc}")


def start_error(exc: DockerException) -> RunResult:
    """Docker refused to start the container: USER when it blames the container's configuration
    (a 400: its command's executable is not in the image, or may not be run), else SYSTEM.

    The same refusal at ``create`` is USER (:func:`create_error`); Docker only finds a missing
    executable at ``start``.
    """
    if isinstance(exc, APIError) and exc.status_code == 400:
        return RunResult.user_failure(f"container could not start: {exc.explanation}")
    return run_error(exc)


def run_error(exc: DockerException) -> RunResult:
    """Docker failed while the container ran: SYSTEM."""
    return RunResult.system_failure(f"docker: {exc}")


def unstoppable(exc: DockerException, *, timeout_s: int) -> RunResult:
    """A timed-out container that Docker would not stop or kill: SYSTEM. The job ends now (the
    container is left to the reaper), rather than running on past its timeout unnoticed."""
    return RunResult.system_failure(
        f"timed out after {timeout_s}s, and the container could not be stopped: {exc}"
    )


def leftover_not_removed(exc: DockerException) -> RunResult:
    """Docker could not say that no container of an earlier attempt still runs, or could not
    remove one, so this attempt does not start (two runs of one job never overlap): SYSTEM."""
    return RunResult.system_failure(
        f"could not make sure no earlier attempt's container still runs: {exc}"
    )


def lease_lost_before_start() -> RunResult:
    return RunResult.system_failure("lease lost before the container started")


def container_exit(wait: Mapping[str, Any], *, timed_out: bool, timeout_s: int) -> RunResult:
    """The container's end, from Docker's ``wait`` answer: a timeout or a non-zero exit is USER."""
    exit_code = int(wait.get("StatusCode", -1))
    if timed_out:
        return RunResult.user_failure(f"timed out after {timeout_s}s", exit_code)
    if exit_code != 0:
        return RunResult.user_failure(f"exited with code {exit_code}", exit_code)
    return RunResult.success(exit_code=0)


# --- HEARTBEAT jobs -----------------------------------------------------------------------------


def endpoint_refused(
    exc: EgressRefused | UnresolvableHostError | httpx.InvalidURL, *, endpoint: str
) -> RunResult:
    """The endpoint cannot be requested at all (the egress policy, DNS, the URL): USER."""
    if isinstance(exc, EgressRefused):
        # For a host name, not what it resolved to (the worker logs that): a user could map
        # internal names with it.
        return RunResult.user_failure(f"{BLOCKED}: {exc.public_reason}")
    if isinstance(exc, UnresolvableHostError):
        return RunResult.user_failure(f"request to {endpoint} failed: {exc}")
    return RunResult.user_failure(f"{endpoint} is not a valid URL")


def request_failed(exc: httpx.HTTPError, *, endpoint: str, timeout_s: float) -> RunResult:
    """The request got no answer: USER, in fixed words."""
    if isinstance(exc, httpx.TimeoutException):
        return RunResult.user_failure(f"timed out after {timeout_s:g}s")
    return RunResult.user_failure(f"request to {endpoint} failed: {describe(exc)}")


def http_status(status: int, *, expected: int, endpoint: str) -> RunResult:
    """The answer's status against the expected one: any other is a USER failure."""
    if status != expected:
        return RunResult.user_failure(f"expected HTTP {expected} from {endpoint}, got {status}")
    return RunResult.success()


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
