"""The execution worker's job store: every query it runs, over the connection pool.

Claims, outcomes, leases and volume rows, one method each, with the SQL in ``queries.sql``. A job
is claimed with one conditional UPDATE that takes it from PENDING/QUEUED to RUNNING and increments
its lease token; a duplicate or stale message finds nothing to claim. Every later write checks the
token (fencing), so a worker that lost its lease changes nothing. An outcome is written in one
transaction with the failure count and, when the count reaches the limit, the workflow's
termination; what to write is decided by the pure functions of :mod:`chronoverse.scheduling`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
from psycopg_pool import PoolClosed
from tenacity import (
    retry,
    retry_if_exception_type,
    retry_if_not_exception_type,
    stop_after_delay,
    wait_exponential,
)

from chronoverse import alerts, lifecycle
from chronoverse.domain import JobStatus, WorkflowKind, utcnow
from chronoverse.postgres import Conn, Pool
from chronoverse.scheduling import Outcome, cancel_if_terminated, decide_termination
from chronoverse.settings import DEFAULT_PUBLIC_URL
from chronoverse.sql import Queries

QUERIES = Queries.load(Path(__file__).with_name("queries.sql"))

_db_retry = retry(
    # PoolClosed is an OperationalError too, but retrying it cannot help: the worker is stopping.
    retry=retry_if_exception_type(psycopg.OperationalError)
    & retry_if_not_exception_type(PoolClosed),
    wait=wait_exponential(multiplier=0.2, max=5),
    stop=stop_after_delay(60),
    reraise=True,
)


@dataclass(frozen=True, kw_only=True)
class Claim:
    """A job this worker claimed: what it runs, under which lease token."""

    job_id: UUID
    workflow_id: UUID
    user_id: UUID
    kind: WorkflowKind
    payload: dict[str, Any]
    attempt: int  # this run's number: its log lines are stored as this attempt
    counted_attempt: int  # what the retry policy counts: hand-backs by stopping workers are not
    lease_token: int
    generation: int
    queued_at: datetime | None
    started_at: datetime

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Claim:
        """From a row of the claiming UPDATE."""
        return cls(
            job_id=row["id"],
            workflow_id=row["workflow_id"],
            user_id=row["user_id"],
            kind=WorkflowKind(row["kind"]),
            payload=row["payload"],
            attempt=row["attempt"],
            counted_attempt=row["counted_attempt"],
            lease_token=row["lease_token"],
            generation=row["generation"],
            queued_at=row["queued_at"],
            started_at=row["started_at"],
        )


@dataclass(frozen=True, kw_only=True)
class Finished:
    """A job whose success was written: when it ran."""

    job_id: UUID
    started_at: datetime | None
    finished_at: datetime | None
    queued_at: datetime | None = None  # known when claimed and finished at once (run_beats)

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return max(0.0, (self.finished_at - self.started_at).total_seconds())


@dataclass(frozen=True, kw_only=True)
class Recorded:
    """What became of an outcome: written, or not because the lease was lost."""

    outcome: Outcome  # as written: CANCELED when the workflow was terminated while the job ran
    written: bool
    duration_s: float | None = None
    workflow_id: UUID | None = None
    terminated_after: int | None = None  # the failure count that terminated the workflow


@dataclass(frozen=True, kw_only=True)
class LapsedLease:
    """A RUNNING job whose lease expired: its worker stopped renewing it."""

    job_id: UUID
    workflow_id: UUID
    kind: WorkflowKind
    attempt: int
    counted_attempt: int
    lease_token: int
    lease_owner: str | None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> LapsedLease:
        return cls(
            job_id=row["id"],
            workflow_id=row["workflow_id"],
            kind=WorkflowKind(row["kind"]),
            attempt=row["attempt"],
            counted_attempt=row["counted_attempt"],
            lease_token=row["lease_token"],
            lease_owner=row["lease_owner"],
        )


class JobStore:
    """The execution worker's side of ``jobs``, ``workflows`` and ``volumes``.

    The methods that a job's thread calls retry a lost connection for up to a minute; the lease
    keeper's and the janitor's run again on their next tick instead.
    """

    def __init__(
        self, pool: Pool, *, owner: str, lease_s: float, public_url: str = DEFAULT_PUBLIC_URL
    ) -> None:
        self._pool = pool
        self._owner = owner
        self.lease_s = lease_s
        self._public_url = public_url  # makes the links of webhook payloads absolute

    # --- claims ---------------------------------------------------------------------------------

    @_db_retry
    def claim(self, job_ids: Sequence[UUID], *, liveness_only: bool = False) -> list[Claim]:
        """Claim these jobs (with ``liveness_only``, only the liveness HEARTBEATs among them)."""
        with self._pool.connection() as conn:
            rows = conn.execute(
                QUERIES.claim_jobs,
                {
                    "ids": list(job_ids),
                    "liveness_only": liveness_only,
                    "owner": self._owner,
                    "lease_s": self.lease_s,
                },
            ).fetchall()
        return [Claim.from_row(row) for row in rows]

    @_db_retry
    def mark_logs_incomplete(self, job_id: UUID, token: int) -> bool:
        """Record that lines of the running attempt were lost; False when the lease was lost."""
        with self._pool.connection() as conn:
            row = conn.execute(
                QUERIES.mark_logs_incomplete, {"job_id": job_id, "token": token}
            ).fetchone()
        return row is not None

    @_db_retry
    def set_container(self, job_id: UUID, token: int, container_id: str) -> bool:
        """Note the job's container; False when the lease was lost."""
        with self._pool.connection() as conn:
            row = conn.execute(
                QUERIES.set_container,
                {"job_id": job_id, "token": token, "container_id": container_id},
            ).fetchone()
        return row is not None

    # --- outcomes -------------------------------------------------------------------------------

    @_db_retry
    def complete(self, claims: Sequence[Claim]) -> list[Finished]:
        """Write successes in one transaction, each guarded by its lease token; return those
        written. Their notifications and health flips are written with them, a few statements
        for the whole batch."""
        with self._pool.connection() as conn:
            locked = conn.execute(
                QUERIES.lock_workflows, {"ids": [c.workflow_id for c in claims]}
            ).fetchall()
            rows = conn.execute(
                QUERIES.complete_jobs,
                {"ids": [c.job_id for c in claims], "tokens": [c.lease_token for c in claims]},
            ).fetchall()
            self._alert_completed(conn, locked, rows)
        return [
            Finished(job_id=row["id"], started_at=row["started_at"], finished_at=row["finished_at"])
            for row in rows
        ]

    @_db_retry
    def run_beats(self, jobs: Sequence[tuple[UUID, UUID]]) -> list[Finished]:
        """Claim and complete, in one transaction and one write of each job row, the liveness
        beats with the canonical empty payload among these (job, workflow) pairs; return those
        finished. Nothing runs for them, so nothing can fail between the claim and the outcome;
        notifications and health flips are written with them, as :meth:`complete` does."""
        with self._pool.connection() as conn:
            locked = conn.execute(
                QUERIES.lock_beat_workflows, {"ids": list({w for _, w in jobs})}
            ).fetchall()
            ours = {row["id"] for row in locked}
            ids = [job_id for job_id, workflow_id in jobs if workflow_id in ours]
            if not ids:
                return []
            rows = conn.execute(
                QUERIES.run_beats, {"ids": ids, "workflow_ids": list(ours), "owner": self._owner}
            ).fetchall()
            self._alert_completed(conn, locked, rows)
        return [
            Finished(
                job_id=row["id"],
                started_at=row["started_at"],
                finished_at=row["finished_at"],
                queued_at=row["queued_at"],
            )
            for row in rows
        ]

    def _alert_completed(
        self, conn: Conn, locked: Sequence[dict[str, Any]], rows: Sequence[dict[str, Any]]
    ) -> None:
        """The notifications and health flips of these completed jobs (rows), whose workflows
        the transaction holds locked (``locked``, read under the lock)."""
        workflows = {row["id"]: alerts.WorkflowState.from_row(row) for row in locked}
        flags = {row["id"]: row for row in locked}  # terminated, liveness
        finished = [
            alerts.JobFinished(
                workflow=workflows[row["workflow_id"]],
                job_id=row["id"],
                status=JobStatus.COMPLETED,
                consecutive_failures=workflows[row["workflow_id"]].consecutive_failures,
                workflow_terminated=flags[row["workflow_id"]]["terminated"],
                liveness=flags[row["workflow_id"]]["liveness"],
            )
            for row in rows
        ]
        alerts.write(conn, alerts.decide_all(finished, public_url=self._public_url, now=utcnow()))

    @_db_retry
    def record(self, job_id: UUID, token: int, outcome: Outcome) -> Recorded:
        """Write the outcome if the lease is still ours."""
        with self._pool.connection() as conn:
            return self._apply(conn, job_id, token, outcome)

    def record_lapsed(self, lease: LapsedLease, outcome: Outcome) -> Recorded:
        """Write the outcome of a job whose lease lapsed, if no other worker did first. When the
        job ends here, its log has a gap: the dead worker's end marker never comes."""
        with self._pool.connection() as conn:
            return self._apply(conn, lease.job_id, lease.lease_token, outcome, logs_lost=True)

    def _apply(
        self, conn: Conn, job_id: UUID, token: int, outcome: Outcome, *, logs_lost: bool = False
    ) -> Recorded:
        params = {"job_id": job_id, "token": token, "logs_lost": logs_lost}
        workflow = conn.execute(QUERIES.lock_workflow_of_job, {"job_id": job_id}).fetchone()
        terminated = workflow is not None and workflow["terminated_at"] is not None
        outcome = cancel_if_terminated(outcome, workflow_terminated=terminated)
        terminated_after = None
        failures: int | None = None
        reason: str | None = None
        if outcome.status is JobStatus.CANCELED:
            assert workflow is not None
            row = conn.execute(
                QUERIES.cancel_job,
                {**params, "exit_code": outcome.exit_code, "error": workflow["terminated_reason"]},
            ).fetchone()
        elif outcome.status is JobStatus.COMPLETED:
            row = conn.execute(
                QUERIES.complete_job, {**params, "exit_code": outcome.exit_code}
            ).fetchone()
        elif outcome.status is JobStatus.PENDING:
            row = conn.execute(
                QUERIES.retry_job, {**params, "retry_at": outcome.retry_at, "error": outcome.error}
            ).fetchone()
        else:
            row = conn.execute(
                QUERIES.fail_job,
                {
                    **params,
                    "exit_code": outcome.exit_code,
                    "error": outcome.error,
                    "failure_kind": outcome.failure_kind.value if outcome.failure_kind else None,
                },
            ).fetchone()
            if row is not None and outcome.counts_as_failure:
                failures, reason = self._count_failure(conn, row["workflow_id"], outcome.error)
        if row is None:
            return Recorded(outcome=outcome, written=False)
        assert workflow is not None  # the job's row was written, so it has a workflow
        if outcome.status is not JobStatus.PENDING:  # a retry is not an outcome
            self._alert(conn, workflow, job_id, outcome, failures)
        if reason is not None:
            lifecycle.terminate(
                conn, row["workflow_id"], reason=reason, public_url=self._public_url
            )
            terminated_after = failures
        finished = Finished(
            job_id=job_id, started_at=row["started_at"], finished_at=row["finished_at"]
        )
        return Recorded(
            outcome=outcome,
            written=True,
            duration_s=finished.duration_s,
            workflow_id=row["workflow_id"],
            terminated_after=terminated_after,
        )

    def _count_failure(
        self, conn: Conn, workflow_id: UUID, error: str | None
    ) -> tuple[int | None, str | None]:
        """Count a failure: the count (None when not counted: the workflow is paused or
        terminated) and, when it reaches the limit, the reason to terminate the workflow."""
        counted = conn.execute(QUERIES.count_failure, {"workflow_id": workflow_id}).fetchone()
        if counted is None:
            return None, None
        failures: int = counted["consecutive_job_failures_count"]
        reason = decide_termination(
            failures, limit=counted["max_consecutive_job_failures_allowed"], last_error=error
        )
        return failures, reason

    def _alert(
        self,
        conn: Conn,
        workflow: dict[str, Any],
        job_id: UUID,
        outcome: Outcome,
        failures: int | None,
    ) -> None:
        """Write the notifications, health flip and webhook events of a job's final outcome;
        ``workflow`` is its row as locked before the outcome was written."""
        state = alerts.WorkflowState.from_row(workflow)
        finished = alerts.JobFinished(
            workflow=state,
            job_id=job_id,
            status=outcome.status,
            error=workflow["terminated_reason"]
            if outcome.status is JobStatus.CANCELED
            else outcome.error,
            exit_code=outcome.exit_code,
            consecutive_failures=state.consecutive_failures if failures is None else failures,
            # Read before this outcome: a failure that terminates the workflow still flips it.
            workflow_terminated=workflow["terminated_at"] is not None,
            liveness=workflow["liveness"],
        )
        decision = alerts.decide(finished, public_url=self._public_url, now=utcnow())
        alerts.write(conn, [decision])

    # --- leases ---------------------------------------------------------------------------------

    def renew(self, leases: Mapping[UUID, int]) -> set[UUID]:
        """Extend these (job, token) leases; return the jobs whose lease is still ours."""
        with self._pool.connection() as conn:
            rows = conn.execute(
                QUERIES.renew_leases,
                {"ids": list(leases), "tokens": list(leases.values()), "lease_s": self.lease_s},
            ).fetchall()
        return {row["id"] for row in rows}

    def lapsed(self, limit: int) -> list[LapsedLease]:
        """RUNNING jobs whose lease expired, the longest expired first."""
        with self._pool.connection() as conn:
            rows = conn.execute(QUERIES.expired_leases, {"limit": limit}).fetchall()
        return [LapsedLease.from_row(row) for row in rows]

    @_db_retry
    def owned(self, leases: Sequence[tuple[UUID, int]]) -> set[UUID]:
        """Which of these (job, token) pairs a live lease owns (for the container reaper)."""
        with self._pool.connection() as conn:
            rows = conn.execute(
                QUERIES.owned_leases,
                {"ids": [j for j, _ in leases], "tokens": [t for _, t in leases]},
            ).fetchall()
        return {row["id"] for row in rows}

    def hand_back(self, leases: Mapping[UUID, int], *, error: str) -> None:
        """Return these RUNNING jobs to PENDING without counting the attempt."""
        with self._pool.connection() as conn:
            for job_id, token in leases.items():
                conn.execute(
                    QUERIES.hand_back_job, {"job_id": job_id, "token": token, "error": error}
                )

    # --- volumes --------------------------------------------------------------------------------

    def touch_volume(self, user_id: UUID, name: str, job_id: UUID) -> UUID:
        """Record that ``job_id`` mounts the volume (creating its row); return the row's id."""
        with self._pool.connection() as conn:
            row = conn.execute(
                QUERIES.touch_volume, {"user_id": user_id, "name": name, "job_id": job_id}
            ).fetchone()
        assert row is not None
        return UUID(str(row["id"]))

    def volume_ids(self, volumes: Sequence[tuple[UUID, str]]) -> dict[tuple[UUID, str], str]:
        """The row ids of these (owner, name) volumes; the ones without a row are left out."""
        with self._pool.connection() as conn:
            rows = conn.execute(
                QUERIES.known_volumes,
                {"user_ids": [v[0] for v in volumes], "names": [v[1] for v in volumes]},
            ).fetchall()
        return {(row["user_id"], row["name"]): str(row["id"]) for row in rows}

    def record_volume_sizes(self, sizes: Sequence[tuple[UUID, str, int]]) -> None:
        """Record the measured size of these (owner, name, bytes) volumes."""
        with self._pool.connection() as conn:
            conn.execute(
                QUERIES.record_volume_sizes,
                {
                    "user_ids": [s[0] for s in sizes],
                    "names": [s[1] for s in sizes],
                    "sizes": [s[2] for s in sizes],
                },
            )
