from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from chronoverse.domain import FailureKind, JobStatus
from chronoverse.errors import MalformedMessageError
from chronoverse.jobs import JobMessage, decode_job_message
from chronoverse.scheduling import (
    DueWorkflow,
    RetryPolicy,
    RunResult,
    SkipReason,
    decide_outcome,
    plan_fire,
)

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def due(next_run_at: datetime = T0, interval: int = 1, active: bool = False) -> DueWorkflow:
    return DueWorkflow(
        id=uuid4(),
        user_id=uuid4(),
        next_run_at=next_run_at,
        interval_minutes=interval,
        has_active_job=active,
    )


def test_an_on_time_slot_runs_and_the_schedule_advances_one_interval() -> None:
    decision = plan_fire(due(interval=5), T0 + timedelta(seconds=0.3))
    assert decision.run_slot == T0
    assert decision.skips == ()
    assert decision.next_run_at == T0 + timedelta(minutes=5)


def test_after_downtime_only_the_latest_missed_slot_runs() -> None:
    decision = plan_fire(due(interval=1), T0 + timedelta(minutes=10, seconds=20))
    assert decision.run_slot == T0 + timedelta(minutes=10)
    assert decision.next_run_at == T0 + timedelta(minutes=11)
    [skip] = decision.skips
    assert skip.reason is SkipReason.MISSED
    assert skip.slots == 10
    assert (skip.first_scheduled_at, skip.last_scheduled_at) == (T0, T0 + timedelta(minutes=9))


def test_an_active_previous_job_skips_the_slot() -> None:
    decision = plan_fire(due(active=True), T0)
    assert decision.run_slot is None
    assert [s.reason for s in decision.skips] == [SkipReason.OVERLAP]
    assert decision.next_run_at == T0 + timedelta(minutes=1)


def test_missed_and_overlapping_at_once() -> None:
    decision = plan_fire(due(active=True), T0 + timedelta(minutes=3))
    assert decision.run_slot is None
    assert [(s.reason, s.slots) for s in decision.skips] == [
        (SkipReason.MISSED, 3),
        (SkipReason.OVERLAP, 1),
    ]


def test_a_workflow_that_is_not_due_is_an_error() -> None:
    with pytest.raises(ValueError):
        plan_fire(due(), T0 - timedelta(seconds=1))


POLICY = RetryPolicy(max_attempts=3, base_delay_s=2, max_delay_s=5)


def test_success_completes() -> None:
    outcome = decide_outcome(RunResult.success(), attempt=1, policy=POLICY, now=T0)
    assert (outcome.status, outcome.counts_as_failure) == (JobStatus.COMPLETED, False)


def test_a_user_failure_is_final_and_counts() -> None:
    outcome = decide_outcome(RunResult.user_failure("HTTP 500"), attempt=1, policy=POLICY, now=T0)
    assert (outcome.status, outcome.failure_kind, outcome.counts_as_failure) == (
        JobStatus.FAILED,
        FailureKind.USER,
        True,
    )
    assert outcome.error == "HTTP 500"


def test_a_system_failure_retries_with_backoff_then_counts() -> None:
    first = decide_outcome(RunResult.system_failure("db down"), attempt=1, policy=POLICY, now=T0)
    assert (first.status, first.retry_at, first.counts_as_failure) == (
        JobStatus.PENDING,
        T0 + timedelta(seconds=2),
        False,
    )
    second = decide_outcome(RunResult.system_failure("db down"), attempt=2, policy=POLICY, now=T0)
    assert second.retry_at == T0 + timedelta(seconds=4)
    last = decide_outcome(RunResult.system_failure("db down"), attempt=3, policy=POLICY, now=T0)
    assert (last.status, last.failure_kind, last.counts_as_failure) == (
        JobStatus.FAILED,
        FailureKind.SYSTEM,
        True,
    )
    assert "gave up after 3 attempts" in (last.error or "")


def test_backoff_is_capped() -> None:
    assert POLICY.delay(10) == timedelta(seconds=5)


def test_job_message_round_trip_and_rejects() -> None:
    message = JobMessage(job_id=uuid4(), workflow_id=uuid4())
    assert decode_job_message(None, message.encode()) == message
    for bad in [
        b'{"v": 2, "type": "job.ready"}',
        b'{"v": 1, "type": "job.ready", "job_id": "x"}',
        b"nope",
    ]:
        with pytest.raises(MalformedMessageError):
            decode_job_message(None, bad)
