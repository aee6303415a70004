"""Pure scheduling decisions: which slot runs, which are skipped, what a job's result becomes.

No I/O. The scheduling worker and the execution worker feed these functions rows and results, and
write back what they decide.

**Catch-up.** A workflow's slots come from its schedule (:mod:`chronoverse.schedules`: every N
minutes from ``next_run_at``, or a cron expression in a time zone). When the scheduler finds
several slots already due (it was down, or the workflow's build finished late, or it was just
resumed), the workflow's catch-up policy decides which run: the latest (the default), none (unless
it is at most a minute late), or every one inside a window. The others are recorded once as a
MISSED (or PAUSED) skip with their count and range. Nothing is silently dropped.

**Overlap.** When the previous job of the workflow is still PENDING, QUEUED or RUNNING, the slot is
skipped and recorded as an OVERLAP skip; the schedule moves on.

**Quota.** A user has at most ``max_active_jobs_per_user`` jobs PENDING, QUEUED or RUNNING:
slots that would take them past it are not run and are recorded as a QUOTA skip.

**Publish now or wait.** A job the scheduler creates is normally inserted QUEUED and published
right after its commit (written once). It is inserted PENDING instead, for the dispatcher's
round-robin, when it takes an execution slot and its owner is at the in-flight cap or already has
ready jobs waiting for room (a new job never overtakes them).

**Outcomes.** A run's result becomes an outcome under the retry policy (USER failures are final,
SYSTEM ones retry with backoff); a job of a workflow terminated while it ran is CANCELED instead;
a counted failure that reaches the workflow's limit terminates it.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from uuid import UUID

from chronoverse.domain import FailureKind, JobStatus
from chronoverse.schedules import Catchup, CatchupPolicy, Schedule, due_slots


class SkipReason(enum.StrEnum):
    MISSED = "MISSED"
    OVERLAP = "OVERLAP"
    PAUSED = "PAUSED"
    QUOTA = "QUOTA"


# Catch-up ``none`` still runs a slot this late: a scheduler pass, not an outage.
CATCHUP_GRACE = timedelta(minutes=1)
# Catch-up ``all`` runs at most this many slots at once; older ones are recorded as missed.
MAX_CATCHUP_RUNS = 100


@dataclass(frozen=True, kw_only=True)
class DueWorkflow:
    id: UUID
    user_id: UUID
    next_run_at: datetime
    schedule: Schedule
    catchup: CatchupPolicy = field(default_factory=CatchupPolicy)
    has_active_job: bool = False


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
    run_slots: tuple[datetime, ...]  # the jobs to create, oldest first
    skips: tuple[Skip, ...]
    next_run_at: datetime | None  # None: it has no next slot (a terminated workflow)


def plan_fire(
    due: DueWorkflow, now: datetime, *, not_run: SkipReason = SkipReason.MISSED
) -> FireDecision:
    """Decide what a due workflow does at ``now`` (requires ``due.next_run_at <= now``).

    Every due slot is accounted for exactly once: run, or in one skip entry. ``not_run`` is the
    reason of the slots the catch-up policy does not run: MISSED for a scheduler that could not
    run them, PAUSED for a workflow resumed after a pause.
    """
    if due.next_run_at > now:
        raise ValueError("workflow is not due")
    slots = due_slots(due.schedule, first=due.next_run_at, now=now, keep=MAX_CATCHUP_RUNS + 1)
    policy = due.catchup
    if policy.mode is Catchup.LATEST:
        run = slots.recent[-1:]
    elif policy.mode is Catchup.NONE:
        run = slots.recent[-1:] if now - slots.latest <= CATCHUP_GRACE else ()
    else:
        in_window = [s for s in slots.recent if now - s <= policy.window]
        run = tuple(in_window[-MAX_CATCHUP_RUNS:])
    skips: list[Skip] = []
    skipped = slots.count - len(run)
    if skipped > 0:
        last = slots.recent[-len(run) - 1] if run else slots.latest
        count = f"{skipped}" if slots.counted_all else f"at least {skipped}"
        why = (
            "while the workflow was paused"
            if not_run is SkipReason.PAUSED
            else "while the scheduler could not run them"
        )
        ran = (
            f"; the catch-up policy ({policy.mode.value}) ran {len(run)}"
            if run
            else f"; the catch-up policy ({policy.mode.value}) ran none"
        )
        skips.append(
            Skip(
                reason=not_run,
                first_scheduled_at=due.next_run_at,
                last_scheduled_at=last,
                slots=skipped,
                detail=f"{count} slot(s) fell {why}{ran}",
            )
        )
    if run and due.has_active_job:
        skips.append(
            Skip(
                reason=SkipReason.OVERLAP,
                first_scheduled_at=run[0],
                last_scheduled_at=run[-1],
                slots=len(run),
                detail="the previous job was still active",
            )
        )
        run = ()
    return FireDecision(
        workflow_id=due.id,
        user_id=due.user_id,
        run_slots=tuple(run),
        skips=tuple(skips),
        next_run_at=slots.next_after,
    )


def apply_active_quota(
    decisions: Sequence[FireDecision], active: Mapping[UUID, int], *, limit: int
) -> list[FireDecision]:
    """Keep each user within ``limit`` active jobs: ``active`` is what each user has now, and the
    run slots of the decisions (in order) that would take a user past it become a QUOTA skip.
    A decision keeps its latest slots when only some fit; its schedule advances either way."""
    counts = dict(active)
    kept: list[FireDecision] = []
    for decision in decisions:
        have = counts.get(decision.user_id, 0)
        room = max(0, limit - have)
        run = decision.run_slots
        if len(run) <= room:
            counts[decision.user_id] = have + len(run)
            kept.append(decision)
            continue
        refused = run[: len(run) - room]
        quota = Skip(
            reason=SkipReason.QUOTA,
            first_scheduled_at=refused[0],
            last_scheduled_at=refused[-1],
            slots=len(refused),
            detail=f"the user had {have} jobs pending, queued or running, the most allowed "
            f"(CHRONOVERSE_MAX_ACTIVE_JOBS_PER_USER={limit})",
        )
        counts[decision.user_id] = have + room
        kept.append(
            replace(decision, run_slots=run[len(refused) :], skips=(*decision.skips, quota))
        )
    return kept


@dataclass(frozen=True, kw_only=True)
class UserLoad:
    """A user's jobs when the scheduler plans a batch (what the quota and the cap count)."""

    active: int = 0  # PENDING, QUEUED or RUNNING: the active-jobs quota
    in_flight: int = 0  # QUEUED or RUNNING that take an execution slot: the in-flight cap
    waiting: bool = False  # ready PENDING jobs that take a slot: held back at the cap


@dataclass(frozen=True, kw_only=True)
class PlannedRun:
    workflow_id: UUID
    user_id: UUID
    scheduled_at: datetime
    publish_now: bool  # inserted QUEUED and published after the commit; else PENDING


def plan_runs(
    decisions: Sequence[FireDecision],
    takes_slot: Mapping[UUID, bool],
    loads: Mapping[UUID, UserLoad],
    *,
    max_in_flight: int,
) -> list[PlannedRun]:
    """The decisions' jobs, in order, each either published at once or left PENDING.

    ``takes_slot`` says per workflow whether its jobs take an execution slot (liveness HEARTBEATs
    do not: they are never held back). A slot-taking job is published at once while its owner
    stays under ``max_in_flight`` counting the jobs published before it in this batch, and only
    if none of the owner's jobs already wait PENDING; after the first that waits, the owner's
    later ones wait too, so they keep their order.
    """
    in_flight = {user: load.in_flight for user, load in loads.items()}
    waiting = {user for user, load in loads.items() if load.waiting}
    planned: list[PlannedRun] = []
    for decision in decisions:
        user = decision.user_id
        for slot in decision.run_slots:
            now = True
            if takes_slot.get(decision.workflow_id, True):
                have = in_flight.get(user, 0)
                if user in waiting or have >= max_in_flight:
                    waiting.add(user)
                    now = False
                else:
                    in_flight[user] = have + 1
            planned.append(
                PlannedRun(
                    workflow_id=decision.workflow_id,
                    user_id=user,
                    scheduled_at=slot,
                    publish_now=now,
                )
            )
    return planned


def users_to_lock(
    new: Mapping[UUID, int], counts: Mapping[UUID, int], *, limit: int, headroom: int
) -> list[UUID]:
    """The users (in id order, the lock order) for whom a batch must lock and count again:
    their jobs counted (``counts``), this batch's ``new`` ones and ``headroom`` (what other
    batches of the same process may be writing, uncommitted, at the same time) pass ``limit``.
    For the others no interleaving of those batches can pass it, so they need no lock."""
    return sorted(user for user, n in new.items() if counts.get(user, 0) + n + headroom > limit)


def users_within(new: Mapping[UUID, int], counts: Mapping[UUID, int], *, limit: int) -> set[UUID]:
    """The users whose ``new`` jobs all fit under ``limit`` on top of ``counts``."""
    return {user for user, n in new.items() if counts.get(user, 0) + n <= limit}


# Shortest wait of an idle scheduler when a slot is already due but was not claimable (another
# lane or scheduling worker holds it, uncommitted, for a few milliseconds): do not spin on it.
MIN_IDLE_WAIT_S = 0.05


def idle_wait_s(next_due: datetime | None, now: datetime, *, longest_s: float) -> float:
    """How long an idle scheduler sleeps (a NOTIFY wakes it sooner): until the next slot comes
    due, at most ``longest_s`` (the poll interval, which also bounds a missed wake-up)."""
    if next_due is None:
        return longest_s
    return min(longest_s, max(MIN_IDLE_WAIT_S, (next_due - now).total_seconds()))


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
