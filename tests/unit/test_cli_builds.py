"""Waiting for a build: the verdict on one reading, and the polling loop on a fake clock."""

from __future__ import annotations

from typing import Any

import pytest

from chronoverse.cli.builds import MAX_POLL_S, Verdict, verdict, wait_for_build
from chronoverse.cli.errors import CliError


def workflow(status: str, *, error: str | None = None, terminated: bool = False) -> dict[str, Any]:
    return {
        "id": "w1",
        "build_status": status,
        "build_error": error,
        "terminated_at": "2026-01-01T00:00:00+00:00" if terminated else None,
        "terminated_reason": "too many failures" if terminated else None,
    }


@pytest.mark.parametrize(
    ("reading", "expected"),
    [
        (workflow("QUEUED"), Verdict.PENDING),
        (workflow("STARTED"), Verdict.PENDING),
        (workflow("COMPLETED"), Verdict.BUILT),
        (workflow("FAILED", error="boom"), Verdict.FAILED),
        # A terminated workflow runs no jobs, built or not; a failed build says more.
        (workflow("COMPLETED", terminated=True), Verdict.TERMINATED),
        (workflow("QUEUED", terminated=True), Verdict.TERMINATED),
        (workflow("FAILED", error="boom", terminated=True), Verdict.FAILED),
    ],
)
def test_verdict(reading: dict[str, Any], expected: Verdict) -> None:
    assert verdict(reading) is expected


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def readings(*statuses: dict[str, Any]) -> Any:
    items = iter(statuses)
    return lambda: next(items)


def test_polls_until_completed_backing_off() -> None:
    time = FakeTime()
    fetch = readings(*[workflow("QUEUED")] * 6, workflow("STARTED"), workflow("COMPLETED"))
    done = wait_for_build(fetch, timeout_s=60, clock=time.clock, sleep=time.sleep)
    assert done["build_status"] == "COMPLETED"
    assert time.sleeps == [0.25, 0.5, 1.0, 2.0, 2.0, 2.0, 2.0]
    assert max(time.sleeps) == MAX_POLL_S


def test_a_failed_build_ends_the_wait_with_its_error() -> None:
    time = FakeTime()
    fetch = readings(workflow("STARTED"), workflow("FAILED", error="pull access denied"))
    with pytest.raises(CliError) as info:
        wait_for_build(fetch, timeout_s=60, clock=time.clock, sleep=time.sleep)
    assert info.value.code == "build_failed"
    assert info.value.message == "the build of workflow w1 FAILED: pull access denied"
    assert info.value.as_json()["workflow"]["build_error"] == "pull access denied"


def test_termination_ends_the_wait() -> None:
    time = FakeTime()
    with pytest.raises(CliError) as info:
        wait_for_build(
            readings(workflow("QUEUED", terminated=True)),
            timeout_s=60,
            clock=time.clock,
            sleep=time.sleep,
        )
    assert info.value.code == "workflow_terminated"
    assert "too many failures" in info.value.message
    assert time.sleeps == []


def test_the_timeout_is_kept_to_the_last_poll() -> None:
    time = FakeTime()
    fetch = readings(*[workflow("QUEUED")] * 100)
    with pytest.raises(CliError) as info:
        wait_for_build(fetch, timeout_s=3, clock=time.clock, sleep=time.sleep)
    assert info.value.code == "timeout"
    assert info.value.message == "the build of workflow w1 is still QUEUED after 3 seconds"
    # 0.25 + 0.5 + 1 + 1.25 (what was left): the last poll is at the deadline, not after it.
    assert time.sleeps == [0.25, 0.5, 1.0, 1.25]
    assert time.now == 3


def test_a_zero_timeout_reads_once() -> None:
    time = FakeTime()
    assert (
        wait_for_build(
            readings(workflow("COMPLETED")), timeout_s=0, clock=time.clock, sleep=time.sleep
        )["build_status"]
        == "COMPLETED"
    )
    with pytest.raises(CliError):
        wait_for_build(
            readings(workflow("QUEUED")), timeout_s=0, clock=time.clock, sleep=time.sleep
        )
    assert time.sleeps == []
