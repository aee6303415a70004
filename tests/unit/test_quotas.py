"""The pure parts of quotas and retention: the scheduler's active-jobs quota over fire decisions,
the retention policy's statements, and how a quota refusal is answered on each edge."""

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import grpc

from chronoverse.errors import ConflictError, QuotaExceededError
from chronoverse.scheduling import FireDecision, Skip, SkipReason, apply_active_quota
from services.scheduling_worker.retention import RetentionPolicy
from services.scheduling_worker.settings import Settings
from services.server.grpc.errors import status_of

NOW = datetime(2030, 1, 1, 12, tzinfo=UTC)
ALICE, BOB = uuid4(), uuid4()


def decision(user_id: object, slots: int) -> FireDecision:
    runs = tuple(NOW - timedelta(minutes=slots - i) for i in range(slots))
    return FireDecision(
        workflow_id=uuid4(),
        user_id=user_id,  # type: ignore[arg-type]
        run_slots=runs,
        skips=(),
        next_run_at=NOW + timedelta(minutes=1),
    )


def test_decisions_within_the_quota_are_unchanged() -> None:
    decisions = [decision(ALICE, 1), decision(ALICE, 2), decision(BOB, 1)]
    assert apply_active_quota(decisions, {ALICE: 7}, limit=10) == decisions


def test_slots_past_the_quota_become_one_quota_skip_keeping_the_latest() -> None:
    partly, none = decision(ALICE, 3), decision(ALICE, 1)
    bobs = decision(BOB, 1)
    kept = apply_active_quota([partly, none, bobs], {ALICE: 8, BOB: 0}, limit=9)

    assert kept[0].run_slots == partly.run_slots[-1:]
    assert kept[0].skips == (
        Skip(
            reason=SkipReason.QUOTA,
            first_scheduled_at=partly.run_slots[0],
            last_scheduled_at=partly.run_slots[1],
            slots=2,
            detail="the user had 8 jobs pending, queued or running, the most allowed "
            "(CHRONOVERSE_MAX_ACTIVE_JOBS_PER_USER=9)",
        ),
    )
    assert kept[1].run_slots == ()
    assert [s.reason for s in kept[1].skips] == [SkipReason.QUOTA]
    assert "had 9 jobs" in kept[1].skips[0].detail
    assert kept[2] == bobs  # another user's quota is their own
    # The schedule advances whatever was refused.
    assert [d.next_run_at for d in kept] == [d.next_run_at for d in (partly, none, bobs)]


def test_a_user_already_over_the_quota_runs_nothing() -> None:
    [kept] = apply_active_quota([decision(ALICE, 1)], {ALICE: 50}, limit=10)
    assert kept.run_slots == ()
    assert kept.skips[0].slots == 1


def test_retention_policy_from_settings() -> None:
    settings = Settings.from_environ(
        {"CHRONOVERSE_RETENTION_JOB_DAYS": "7", "CHRONOVERSE_RETENTION_SKIPS_PER_WORKFLOW": "50"}
    )
    policy = RetentionPolicy.from_settings(settings)
    [(jobs, _, job_params), (skips, _, skip_params)] = policy.statements(NOW)
    assert (jobs, skips) == ("jobs", "skipped_runs")
    assert job_params == {"before": NOW - timedelta(days=7), "keep": 1000, "limit": 500}
    assert skip_params == {"before": NOW - timedelta(days=30), "keep": 50, "limit": 500}


def test_a_quota_refusal_is_a_conflict_and_resource_exhausted_over_grpc() -> None:
    error = QuotaExceededError("CHRONOVERSE_MAX_WORKFLOWS_PER_USER", 3, "you have 3 workflows")
    assert isinstance(error, ConflictError) and error.code == "quota_exceeded"
    assert status_of(error) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "you have 3 workflows", None)
