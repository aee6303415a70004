"""When a run's container may be removed after its outcome, and which stopped containers other
workers' reapers leave to the worker removing them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from docker.errors import APIError

from chronoverse.scheduling import RunResult
from services.execution_worker import results
from services.execution_worker.reaper import left_to_its_worker
from services.execution_worker.removals import after_the_outcome

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)
NEVER = "0001-01-01T00:00:00Z"


def api_error(status: int) -> APIError:
    response = requests.Response()
    response.status_code = status
    return APIError("refused", response=response, explanation="refused")


@pytest.mark.parametrize(
    "result",
    [
        results.container_exit({"StatusCode": 0}, timed_out=False, timeout_s=5),
        results.container_exit({"StatusCode": 3}, timed_out=False, timeout_s=5),
        results.container_exit({"StatusCode": 137}, timed_out=True, timeout_s=5),
        results.start_error(api_error(400)),  # never started, and never retried
    ],
)
def test_a_final_outcome_is_recorded_while_its_container_is_removed(result: RunResult) -> None:
    assert after_the_outcome(result)


@pytest.mark.parametrize(
    "result",
    [
        results.run_error(api_error(500)),
        results.unstoppable(api_error(500), timeout_s=5),
        results.lease_lost_before_start(),
        results.start_error(api_error(500)),
    ],
)
def test_a_retried_run_s_container_is_removed_before_its_outcome(result: RunResult) -> None:
    assert not after_the_outcome(result)


def stamp(at: datetime) -> str:
    """As Docker writes it, with nanoseconds."""
    return at.strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z"


def attrs(*, created: datetime, finished: str = NEVER) -> dict[str, Any]:
    return {"Created": stamp(created), "State": {"FinishedAt": finished}}


def test_a_container_being_removed_is_left_to_whoever_removes_it() -> None:
    old = attrs(created=NOW - timedelta(hours=1), finished=stamp(NOW - timedelta(hours=1)))
    assert left_to_its_worker("removing", old, now=NOW, grace_s=60)


def test_a_container_stopped_moments_ago_is_left_to_its_worker() -> None:
    just = attrs(created=NOW - timedelta(minutes=5), finished=stamp(NOW - timedelta(seconds=2)))
    assert left_to_its_worker("exited", just, now=NOW, grace_s=60)
    assert left_to_its_worker("dead", just, now=NOW, grace_s=60)
    # Created and never started (Docker refused to start it): its creation is its last change.
    assert left_to_its_worker(
        "created", attrs(created=NOW - timedelta(seconds=2)), now=NOW, grace_s=60
    )


def test_a_container_stopped_long_ago_is_reaped() -> None:
    stale = attrs(created=NOW - timedelta(minutes=5), finished=stamp(NOW - timedelta(minutes=2)))
    assert not left_to_its_worker("exited", stale, now=NOW, grace_s=60)
    assert not left_to_its_worker(
        "created", attrs(created=NOW - timedelta(minutes=2)), now=NOW, grace_s=60
    )
    assert not left_to_its_worker("exited", {"State": {}}, now=NOW, grace_s=60)  # no stamp: reap


@pytest.mark.parametrize("status", ["running", "paused", "restarting"])
def test_a_running_container_is_never_left(status: str) -> None:
    # However young: it is the run of a worker that died, and must be stopped.
    young = attrs(created=NOW - timedelta(seconds=1))
    assert not left_to_its_worker(status, young, now=NOW, grace_s=60)
