"""Pure scheduling decisions: which slot runs, which are skipped, what a job's result becomes.

No I/O. The scheduling worker and the execution worker feed these functions rows and results, and
write back what they decide.

**Catch-up.** A workflow's slots are ``next_run_at + k * interval``. When the scheduler finds
several slots already due (it was down, or the workflow's build finished late), only the latest
due slot runs; the earlier ones are recorded once as a MISSED skip with their count and range.
Nothing is replayed in bulk, and nothing is silently dropped.

**Overlap.** When the previous job of the workflow is still PENDING, QUEUED or RUNNING, the slot is
skipped and recorded as an OVERLAP skip; the schedule moves on.

**Outcomes.** A run's result becomes an outcome under the retry policy (USER failures are final,
SYSTEM ones retry with backoff); a job of a workflow terminated while it ran is CANCELED instead;
a counted failure that reaches the workflow's limit terminates it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from uuid import UUID

from chronoverse.domain import FailureKind, JobStatus


class SkipReason(enum.StrEnum):
    MISSED = "MISSED"
    OVERLAP = "OVERLAP"


@dataclass(frozen=True, kw_only=True)
class DueWorkflow:
    id: UUID
    user_id: UUID
    next_run_at: datetime
    interval_minutes: int
    has_active_job: bool


@dataclass(frozen=True, kw_only=True)
class Skip:
    reason: SkipReason
    first_scheduled_at: datetime
    last_scheduled_at: datetime
    slots: int
    detail: str


@dataclass(frozen=True, kw_only=True)
class FireDecision:
    workflow_id: UUID
    user_id: UUID
    run_slot: datetime | None  # the job to create, if any
    skips: tuple[Skip, ...]
    next_run_at: datetime


def plan_fire(due: DueWorkflow, now: datetime) -> FireDecision:
    """Decide what a due workflow does at ``now`` (requires ``due.next_run_at <= now``)."""
    if due.next_run_at > now:
        raise ValueError("workflow is not due")
    interval = timedelta(minutes=due.interval_minutes)
    due_slots = (now - due.next_run_at) // interval + 1
    latest = due.next_run_at + (due_slots - 1) * interval
    skips: list[Skip] = []
    if due_slots > 1:
        skips.append(
            Skip(
                reason=SkipReason.MISSED,
                first_scheduled_at=due.next_run_at,
                last_scheduled_at=latest - interval,
                slots=due_slots - 1,
                detail=f"{due_slots - 1} slot(s) were due while the scheduler could not run them; "
                f"only the latest ({latest.isoformat()}) runs",
            )
        )
    run_slot: datetime | None = latest
    if due.has_active_job:
        skips.append(
            Skip(
                reason=SkipReason.OVERLAP,
                first_scheduled_at=latest,
                last_scheduled_at=latest,
                slots=1,
                detail="the previous job was still active",
            )
        )
        run_slot = None
    return FireDecision(
        workflow_id=due.id,
        user_id=due.user_id,
        run_slot=run_slot,
        skips=tuple(skips),
        next_run_at=latest + interval,
    )


# --- outcomes -----------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class RunResult:
    """What running a job produced, before any retry policy."""

    succeeded: bool
    failure_kind: FailureKind | None = None
    error: str | None = None
    exit_code: int | None = None

    @classmethod
    def success(cls, exit_code: int | None = None) -> RunResult:
        return cls(succeeded=True, exit_code=exit_code)

    @classmethod
    def user_failure(cls, error: str, exit_code: int | None = None) -> RunResult:
        return cls(succeeded=False, failure_kind=FailureKind.USER, error=error, exit_code=exit_code)

    @classmethod
    def system_failure(cls, error: str) -> RunResult:
        return cls(succeeded=False, failure_kind=FailureKind.SYSTEM, error=error)


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """SYSTEM failures are retried this many times in all, with exponential backoff."""

    max_attempts: int = 3
    base_delay_s: float = 2.0
    max_delay_s: float = 60.0

    def delay(self, attempt: int) -> timedelta:
        """The wait before attempt ``attempt + 1`` (``attempt`` counts from 1)."""
        return timedelta(seconds=min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1)))


@dataclass(frozen=True, kw_only=True)
class Outcome:
    status: JobStatus  # COMPLETED, FAILED, PENDING for a retry, or CANCELED
    failure_kind: FailureKind | None
    error: str | None
    exit_code: int | None
    retry_at: datetime | None
    counts_as_failure: bool


def decide_outcome(
    result: RunResult, *, attempt: int, policy: RetryPolicy, now: datetime
) -> Outcome:
    """Apply the retry policy: USER failures are final, SYSTEM ones retry until attempts run out."""
    if result.succeeded:
        return Outcome(
            status=JobStatus.COMPLETED,
            failure_kind=None,
            error=None,
            exit_code=result.exit_code,
            retry_at=None,
            counts_as_failure=False,
        )
    if result.failure_kind is FailureKind.SYSTEM and attempt < policy.max_attempts:
        return Outcome(
            status=JobStatus.PENDING,
            failure_kind=None,
            error=f"attempt {attempt} failed: {result.error}; retrying",
            exit_code=None,
            retry_at=now + policy.delay(attempt),
            counts_as_failure=False,
        )
    error = result.error or "failed"
    if result.failure_kind is FailureKind.SYSTEM:
        error = f"{error} (gave up after {attempt} attempts)"
    return Outcome(
        status=JobStatus.FAILED,
        failure_kind=result.failure_kind or FailureKind.USER,
        error=error,
        exit_code=result.exit_code,
        retry_at=None,
        counts_as_failure=True,
    )


def cancel_if_terminated(outcome: Outcome, *, workflow_terminated: bool) -> Outcome:
    """A job whose workflow was terminated while it ran is CANCELED, not failed or retried: its
    container was stopped on purpose, and the failure does not count. A success stays one."""
    if not workflow_terminated or outcome.status is JobStatus.COMPLETED:
        return outcome
    return replace(outcome, status=JobStatus.CANCELED, failure_kind=None, counts_as_failure=False)


def decide_termination(failures: int, *, limit: int, last_error: str | None) -> str | None:
    """The reason to terminate a workflow whose consecutive failures now number ``failures``, or
    None while they stay under its ``limit``."""
    if failures < limit:
        return None
    last = last_error or "unknown"
    return f"terminated after {failures} consecutive failed jobs; last error: {last}"
