"""What a run's result means for a job and its workflow: failure classification of container exits,
Docker errors and HTTP results, the CANCELED rewrite, and the auto-termination decision."""

from __future__ import annotations

import ssl
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import requests
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from pydantic import ValidationError

from chronoverse.domain import FailureKind, JobStatus
from chronoverse.errors import EgressRefused, FieldError, InvalidFieldsError, UnresolvableHostError
from chronoverse.payloads import HeartbeatPayload
from chronoverse.scheduling import (
    RetryPolicy,
    RunResult,
    cancel_if_terminated,
    decide_outcome,
    decide_termination,
)
from chronoverse.secrets import SecretError
from services.execution_worker import results

T0 = datetime(2026, 1, 1, tzinfo=UTC)
POLICY = RetryPolicy(max_attempts=3, base_delay_s=2, max_delay_s=60)
URL = "https://example.com/healthz"


def user(error: str, exit_code: int | None = None) -> RunResult:
    return RunResult(
        succeeded=False, failure_kind=FailureKind.USER, error=error, exit_code=exit_code
    )


def system(error: str) -> RunResult:
    return RunResult(succeeded=False, failure_kind=FailureKind.SYSTEM, error=error)


def api_error(status: int, explanation: str, kind: type[APIError] = APIError) -> APIError:
    response = requests.Response()
    response.status_code = status
    return kind("docker said no", response=response, explanation=explanation)


# --- container exits ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wait", "timed_out", "expected"),
    [
        ({"StatusCode": 0}, False, RunResult(succeeded=True, exit_code=0)),
        ({"StatusCode": 3}, False, user("exited with code 3", 3)),
        ({"StatusCode": 137}, False, user("exited with code 137", 137)),
        ({}, False, user("exited with code -1", -1)),
        # A timeout is the job's, whatever the code the stop left behind.
        ({"StatusCode": 143}, True, user("timed out after 30s", 143)),
        ({"StatusCode": 0}, True, user("timed out after 30s", 0)),
    ],
)
def test_a_container_exit_is_a_success_only_at_zero_in_time(
    wait: dict[str, int], timed_out: bool, expected: RunResult
) -> None:
    assert results.container_exit(wait, timed_out=timed_out, timeout_s=30) == expected


# --- Docker errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (
            api_error(404, "no such image", ImageNotFound),
            user("image busybox:1 not found: no such image"),
        ),
        (api_error(400, "invalid mount"), user("container rejected: invalid mount")),
        (api_error(409, "name in use"), user("container rejected: name in use")),
        (api_error(500, "daemon broke"), system("docker: daemon broke")),
        (DockerException("socket gone"), system("docker unavailable: socket gone")),
    ],
)
def test_a_refused_create_is_user_only_when_docker_blames_the_request(
    exc: DockerException, expected: RunResult
) -> None:
    assert results.create_error(exc, image="busybox:1") == expected


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (
            api_error(404, "pull access denied", ImageNotFound),
            user("image busybox:1 not found locally: pull access denied"),
        ),
        (
            InvalidFieldsError([FieldError("payload.resources.memory_mb", "is over 512")]),
            user("refused by the container policy: payload.resources.memory_mb: is over 512"),
        ),
        (
            SecretError("another key"),
            user("cannot read the payload's secrets: another key"),
        ),
    ],
)
def test_a_definition_that_cannot_be_rebuilt_is_a_user_failure(
    exc: ImageNotFound | InvalidFieldsError | SecretError, expected: RunResult
) -> None:
    assert results.definition_error(exc, image="busybox:1") == expected


def test_docker_failing_while_the_container_runs_is_a_system_failure() -> None:
    assert results.run_error(DockerException("attach broke")) == system("docker: attach broke")


MISSING = 'exec: "nope": executable file not found in $PATH: unknown'


@pytest.mark.parametrize(
    ("exc", "kind", "error"),
    [
        # Docker finds a command whose executable is not in the image only at start.
        (api_error(400, MISSING), FailureKind.USER, f"container could not start: {MISSING}"),
        # Gone meanwhile (removed under it), or the daemon's own trouble: not the job's fault.
        (api_error(404, "no such container", NotFound), FailureKind.SYSTEM, "docker: 404 "),
        (api_error(500, "cgroup busy"), FailureKind.SYSTEM, "docker: 500 "),
        (DockerException("socket gone"), FailureKind.SYSTEM, "docker: socket gone"),
    ],
)
def test_a_refused_start_is_user_only_when_docker_blames_the_configuration(
    exc: DockerException, kind: FailureKind, error: str
) -> None:
    result = results.start_error(exc)
    assert result.failure_kind is kind
    assert (result.error or "").startswith(error)


def test_a_container_that_cannot_be_stopped_ends_the_job_as_a_system_failure() -> None:
    result = results.unstoppable(api_error(500, "cannot kill"), timeout_s=5)
    assert result.failure_kind is FailureKind.SYSTEM
    assert (result.error or "").startswith(
        "timed out after 5s, and the container could not be stopped: "
    )


def test_a_leftover_container_that_stays_is_a_system_failure() -> None:
    result = results.leftover_not_removed(DockerException("daemon gone"))
    assert result == system(
        "could not make sure no earlier attempt's container still runs: daemon gone"
    )


@pytest.mark.parametrize(
    ("result", "error"),
    [
        (results.lease_lost_before_start(), "lease lost before the container started"),
        (results.no_container_runtime(), "this worker has no container runtime"),
        (results.worker_error(RuntimeError("bug")), "worker error: bug"),
    ],
)
def test_the_worker_s_own_troubles_are_system_failures(result: RunResult, error: str) -> None:
    assert result == system(error)


# --- HTTP results -------------------------------------------------------------------------------


def test_only_the_expected_status_succeeds() -> None:
    assert results.http_status(204, expected=204, endpoint=URL) == RunResult.success()
    assert results.http_status(200, expected=204, endpoint=URL) == user(
        f"expected HTTP 204 from {URL}, got 200"
    )
    assert results.http_status(500, expected=200, endpoint=URL).failure_kind is FailureKind.USER


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (EgressRefused("loopback"), user("blocked by the egress policy: loopback")),
        (
            UnresolvableHostError("example.com"),
            user(f"request to {URL} failed: could not resolve example.com"),
        ),
        (httpx.InvalidURL("bad"), user(f"{URL} is not a valid URL")),
    ],
)
def test_an_endpoint_that_cannot_be_requested_is_a_user_failure(
    exc: EgressRefused | UnresolvableHostError | httpx.InvalidURL, expected: RunResult
) -> None:
    assert results.endpoint_refused(exc, endpoint=URL) == expected


def caused(exc: httpx.HTTPError, cause: BaseException) -> httpx.HTTPError:
    exc.__cause__ = cause
    return exc


@pytest.mark.parametrize(
    ("exc", "words"),
    [
        (
            caused(httpx.ConnectError("peer said: s3cret"), ConnectionRefusedError()),
            "connection refused",
        ),
        (
            caused(httpx.ConnectError("x"), ssl.SSLCertVerificationError("self-signed")),
            "TLS failure: the server's certificate could not be verified",
        ),
        (
            caused(httpx.ConnectError("x"), ssl.SSLError("handshake")),
            "TLS failure: the handshake did not succeed",
        ),
        (httpx.ConnectError("no route"), "could not connect"),
        (httpx.RemoteProtocolError("garbage: s3cret"), "the peer did not answer with valid HTTP"),
        (httpx.ReadError("x"), "the connection failed while reading the response"),
        (httpx.WriteError("x"), "the connection failed while sending the request"),
        (httpx.UnsupportedProtocol("x"), "the URL cannot be requested"),
        (httpx.TooManyRedirects("x"), "the request failed (TooManyRedirects)"),
    ],
)
def test_a_failed_request_is_a_user_failure_in_fixed_words(
    exc: httpx.HTTPError, words: str
) -> None:
    result = results.request_failed(exc, endpoint=URL, timeout_s=10)
    assert result == user(f"request to {URL} failed: {words}")
    assert "s3cret" not in (result.error or "")


def test_a_timed_out_request_names_its_timeout() -> None:
    result = results.request_failed(httpx.ReadTimeout("slow"), endpoint=URL, timeout_s=0.5)
    assert result == user("timed out after 0.5s")


# --- payloads -----------------------------------------------------------------------------------


def test_an_invalid_stored_payload_is_named_by_field_not_by_value() -> None:
    with pytest.raises(ValidationError) as caught:
        HeartbeatPayload.model_validate({"endpoint": URL, "headers": {"X-Token": "s3cret\r\nx"}})
    result = results.invalid_payload(caught.value)
    assert result.failure_kind is FailureKind.USER
    assert (result.error or "").startswith("stored payload is invalid: payload.headers ")
    assert "line break" in (result.error or "")
    assert "s3cret" not in (result.error or "")


def test_unreadable_secrets_are_a_user_failure() -> None:
    assert results.unreadable_secrets(SecretError("tampered")) == user(
        "cannot read the payload's secrets: tampered"
    )


# --- from classification to outcome -------------------------------------------------------------


def test_a_user_failure_is_final_and_a_system_one_is_retried() -> None:
    exited = decide_outcome(
        results.container_exit({"StatusCode": 1}, timed_out=False, timeout_s=30),
        attempt=1,
        policy=POLICY,
        now=T0,
    )
    assert (exited.status, exited.failure_kind, exited.exit_code) == (
        JobStatus.FAILED,
        FailureKind.USER,
        1,
    )
    assert exited.counts_as_failure
    broken = decide_outcome(
        results.create_error(api_error(500, "daemon broke"), image="busybox:1"),
        attempt=1,
        policy=POLICY,
        now=T0,
    )
    assert (broken.status, broken.retry_at) == (JobStatus.PENDING, T0 + timedelta(seconds=2))
    assert not broken.counts_as_failure


# --- a terminated workflow, and termination -----------------------------------------------------


@pytest.mark.parametrize(
    "result",
    [RunResult.user_failure("exited with code 1", 1), RunResult.system_failure("docker: gone")],
)
def test_a_failure_or_retry_of_a_terminated_workflow_s_job_is_canceled(result: RunResult) -> None:
    outcome = decide_outcome(result, attempt=1, policy=POLICY, now=T0)
    canceled = cancel_if_terminated(outcome, workflow_terminated=True)
    assert (canceled.status, canceled.failure_kind, canceled.counts_as_failure) == (
        JobStatus.CANCELED,
        None,
        False,
    )
    assert (canceled.error, canceled.exit_code) == (outcome.error, outcome.exit_code)
    assert cancel_if_terminated(outcome, workflow_terminated=False) == outcome


def test_a_success_of_a_terminated_workflow_s_job_stays_a_success() -> None:
    outcome = decide_outcome(RunResult.success(exit_code=0), attempt=1, policy=POLICY, now=T0)
    assert cancel_if_terminated(outcome, workflow_terminated=True) == outcome


@pytest.mark.parametrize(
    ("failures", "limit", "reason"),
    [
        (1, 3, None),
        (2, 3, None),
        (3, 3, "terminated after 3 consecutive failed jobs; last error: got 500"),
        (4, 3, "terminated after 4 consecutive failed jobs; last error: got 500"),
        (1, 1, "terminated after 1 consecutive failed jobs; last error: got 500"),
    ],
)
def test_a_workflow_is_terminated_when_its_failures_reach_the_limit(
    failures: int, limit: int, reason: str | None
) -> None:
    assert decide_termination(failures, limit=limit, last_error="got 500") == reason


def test_a_termination_without_an_error_says_unknown() -> None:
    assert decide_termination(2, limit=2, last_error=None) == (
        "terminated after 2 consecutive failed jobs; last error: unknown"
    )
