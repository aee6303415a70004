from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import pytest

from chronoverse.domain import FailureKind, JobStatus
from chronoverse.errors import MalformedMessageError
from chronoverse.jobs import JobMessage, decode_job_message
from chronoverse.schedules import Catchup, CatchupPolicy, CronSchedule, IntervalSchedule
from chronoverse.scheduling import (
    MAX_CATCHUP_RUNS,
    MIN_IDLE_WAIT_S,
    DueWorkflow,
    FireDecision,
    RetryPolicy,
    RunResult,
    SkipReason,
    UserLoad,
    decide_outcome,
    idle_wait_s,
    plan_fire,
    plan_runs,
    users_to_lock,
    users_within,
)

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def due(
    next_run_at: datetime = T0,
    interval: int = 1,
    active: bool = False,
    catchup: CatchupPolicy | None = None,
    schedule: CronSchedule | None = None,
) -> DueWorkflow:
    return DueWorkflow(
        id=uuid4(),
        user_id=uuid4(),
        next_run_at=next_run_at,
        schedule=schedule or IntervalSchedule(minutes=interval),
        catchup=catchup or CatchupPolicy(),
        has_active_job=active,
    )


def test_an_on_time_slot_runs_and_the_schedule_advances_one_interval() -> None:
    decision = plan_fire(due(interval=5), T0 + timedelta(seconds=0.3))
    assert decision.run_slots == (T0,)
    assert decision.skips == ()
    assert decision.next_run_at == T0 + timedelta(minutes=5)


def test_after_downtime_only_the_latest_missed_slot_runs() -> None:
    decision = plan_fire(due(interval=1), T0 + timedelta(minutes=10, seconds=20))
    assert decision.run_slots == (T0 + timedelta(minutes=10),)
    assert decision.next_run_at == T0 + timedelta(minutes=11)
    [skip] = decision.skips
    assert skip.reason is SkipReason.MISSED
    assert skip.slots == 10
    assert (skip.first_scheduled_at, skip.last_scheduled_at) == (T0, T0 + timedelta(minutes=9))


def test_an_active_previous_job_skips_the_slot() -> None:
    decision = plan_fire(due(active=True), T0)
    assert decision.run_slots == ()
    assert [s.reason for s in decision.skips] == [SkipReason.OVERLAP]
    assert decision.next_run_at == T0 + timedelta(minutes=1)


def test_missed_and_overlapping_at_once() -> None:
    decision = plan_fire(due(active=True), T0 + timedelta(minutes=3))
    assert decision.run_slots == ()
    assert [(s.reason, s.slots) for s in decision.skips] == [
        (SkipReason.MISSED, 3),
        (SkipReason.OVERLAP, 1),
    ]


def test_a_workflow_that_is_not_due_is_an_error() -> None:
    with pytest.raises(ValueError):
        plan_fire(due(), T0 - timedelta(seconds=1))


def accounted(decision: FireDecision) -> int:
    return len(decision.run_slots) + sum(s.slots for s in decision.skips)


@pytest.mark.parametrize("late", [timedelta(seconds=5), timedelta(minutes=1)])
def test_catchup_none_still_runs_a_slot_that_is_barely_late(late: timedelta) -> None:
    decision = plan_fire(due(catchup=CatchupPolicy(mode=Catchup.NONE)), T0 + late)
    assert decision.run_slots[-1] == T0 + late.seconds // 60 * timedelta(minutes=1)


def test_catchup_none_runs_nothing_after_an_outage() -> None:
    now = T0 + timedelta(minutes=12)  # the latest slot (+10) is two minutes late
    decision = plan_fire(due(interval=5, catchup=CatchupPolicy(mode=Catchup.NONE)), now)
    assert decision.run_slots == ()
    [skip] = decision.skips
    assert (skip.reason, skip.slots) == (SkipReason.MISSED, 3)
    assert skip.last_scheduled_at == T0 + timedelta(minutes=10)
    assert decision.next_run_at == T0 + timedelta(minutes=15)


def test_catchup_all_runs_every_slot_inside_its_window() -> None:
    policy = CatchupPolicy(mode=Catchup.ALL, window_minutes=30)
    now = T0 + timedelta(hours=2)
    decision = plan_fire(due(interval=10, catchup=policy), now)
    assert decision.run_slots == tuple(now - timedelta(minutes=m) for m in (30, 20, 10, 0))
    [skip] = decision.skips
    assert (skip.reason, skip.slots) == (SkipReason.MISSED, 9)
    assert (skip.first_scheduled_at, skip.last_scheduled_at) == (T0, now - timedelta(minutes=40))
    assert accounted(decision) == 13


def test_catchup_all_is_bounded() -> None:
    policy = CatchupPolicy(mode=Catchup.ALL, window_minutes=10080)
    decision = plan_fire(due(interval=1, catchup=policy), T0 + timedelta(days=3))
    assert len(decision.run_slots) == MAX_CATCHUP_RUNS
    assert accounted(decision) == 3 * 24 * 60 + 1


def test_paused_slots_are_recorded_as_paused_on_resume() -> None:
    now = T0 + timedelta(minutes=5, seconds=10)
    decision = plan_fire(due(interval=1), now, not_run=SkipReason.PAUSED)
    assert decision.run_slots == (T0 + timedelta(minutes=5),)
    assert [(s.reason, s.slots) for s in decision.skips] == [(SkipReason.PAUSED, 5)]


def test_a_cron_workflow_catches_up_across_a_dst_change() -> None:
    riga = CronSchedule(expression="0 3 * * *", timezone="Europe/Riga")
    first = datetime(2027, 3, 26, 1, tzinfo=UTC)
    decision = plan_fire(
        due(next_run_at=first, schedule=riga), datetime(2027, 3, 29, 0, 1, tzinfo=UTC)
    )
    assert decision.run_slots == (datetime(2027, 3, 29, 0, tzinfo=UTC),)
    assert [(s.reason, s.slots) for s in decision.skips] == [(SkipReason.MISSED, 3)]
    assert decision.skips[0].last_scheduled_at == datetime(2027, 3, 28, 1, tzinfo=UTC)
    assert decision.next_run_at == datetime(2027, 3, 30, 0, tzinfo=UTC)


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


# --- publish now or wait (plan_runs) ------------------------------------------------------------


def _fire(user: UUID, *slots: datetime) -> FireDecision:
    return FireDecision(
        workflow_id=uuid4(), user_id=user, run_slots=slots, skips=(), next_run_at=None
    )


def test_jobs_are_published_now_while_their_owner_is_under_the_cap() -> None:
    alice = uuid4()
    decisions = [_fire(alice, T0), _fire(alice, T0, T0 + timedelta(minutes=1)), _fire(alice, T0)]
    slots = {d.workflow_id: True for d in decisions}
    runs = plan_runs(decisions, slots, {alice: UserLoad(in_flight=1)}, max_in_flight=3)
    # Room for two more: the first two in order go now, every later one of hers waits.
    assert [r.publish_now for r in runs] == [True, True, False, False]
    assert [r.scheduled_at for r in runs] == [T0, T0, T0 + timedelta(minutes=1), T0]


def test_a_new_job_waits_behind_its_owner_s_waiting_jobs_even_with_room() -> None:
    alice, bob = uuid4(), uuid4()
    decisions = [_fire(alice, T0), _fire(bob, T0)]
    slots = {d.workflow_id: True for d in decisions}
    loads = {alice: UserLoad(in_flight=0, waiting=True)}
    runs = plan_runs(decisions, slots, loads, max_in_flight=10)
    assert [(r.user_id, r.publish_now) for r in runs] == [(alice, False), (bob, True)]


def test_jobs_that_take_no_slot_are_always_published_now() -> None:
    alice = uuid4()
    beat, container = _fire(alice, T0), _fire(alice, T0)
    runs = plan_runs(
        [beat, container],
        {beat.workflow_id: False, container.workflow_id: True},
        {alice: UserLoad(in_flight=5, waiting=True)},
        max_in_flight=5,
    )
    assert [r.publish_now for r in runs] == [True, False]


def test_an_idle_scheduler_sleeps_until_the_next_slot_at_most_the_poll_interval() -> None:
    assert idle_wait_s(T0 + timedelta(milliseconds=120), T0, longest_s=0.5) == pytest.approx(0.12)
    assert idle_wait_s(T0 + timedelta(minutes=5), T0, longest_s=0.5) == 0.5
    assert idle_wait_s(None, T0, longest_s=0.5) == 0.5  # nothing scheduled at all
    # Due already but not claimable (another scheduling worker holds it): a short wait, no spin.
    assert idle_wait_s(T0 - timedelta(seconds=1), T0, longest_s=0.5) == MIN_IDLE_WAIT_S


def test_only_users_that_concurrent_batches_could_take_past_a_limit_are_locked() -> None:
    alice, bob, carol = sorted([uuid4(), uuid4(), uuid4()])
    new = {alice: 10, bob: 10, carol: 1}
    counts = {alice: 970, bob: 100}
    # Another lane may be writing 1,000 more at the same time: alice (970 + 10 + 1,000) and
    # bob (100 + 10 + 1,000) could pass 1,100; carol (0 + 1 + 1,000) cannot.
    assert users_to_lock(new, counts, limit=1100, headroom=1000) == [alice, bob]
    assert users_to_lock(new, counts, limit=1100, headroom=0) == []  # one lane: nothing races
    assert users_within(new, counts, limit=980) == {alice, bob, carol}
    assert users_within(new, counts, limit=979) == {bob, carol}  # all of a batch, or none
