"""Claiming, running and recording jobs, and recovering those whose worker died.

A job is claimed with one conditional UPDATE that takes it from PENDING/QUEUED to RUNNING and
increments its lease token; a duplicate or stale message finds nothing to claim. The result is
written with the token as a condition, in one transaction with the failure count and, when the
count reaches the limit, the workflow's termination.

Liveness HEARTBEATs (no endpoint) have nothing to run, so the cost of one is its claim and its
record. The consumer hands the executor a batch of messages; the liveness jobs among them are
claimed in one statement and their successes recorded in one transaction, while every other job is
claimed and run on its own thread of the job pool, as before.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import psycopg
from prometheus_client import Counter, Histogram
from psycopg_pool import PoolClosed
from pydantic import ValidationError
from tenacity import (
    retry,
    retry_if_exception_type,
    retry_if_not_exception_type,
    stop_after_delay,
    wait_exponential,
)

from chronoverse import lifecycle
from chronoverse.domain import JobStatus, WorkflowKind, utcnow
from chronoverse.egress import EgressPolicy
from chronoverse.jobs import JobMessage
from chronoverse.kafka.consumer import Record
from chronoverse.payloads import HeartbeatPayload, field_errors
from chronoverse.postgres import Conn, Pool
from chronoverse.scheduling import (
    Outcome,
    RetryPolicy,
    RunResult,
    decide_outcome,
    termination_reason,
)
from chronoverse.secrets import SecretBox, SecretError, open_payload
from chronoverse.sql import Queries
from services.execution_worker.containers import ContainerRunner
from services.execution_worker.heartbeat import run_heartbeat
from services.execution_worker.leases import LeaseBook

logger = logging.getLogger(__name__)
QUERIES = Queries.load(Path(__file__).with_name("queries.sql"))

DUPLICATES = Counter(
    "chronoverse_job_messages_unclaimable",
    "Job messages whose job was already claimed, finished or not yet due.",
)
QUEUE_TO_START = Histogram(
    "chronoverse_job_queue_to_start_seconds",
    "From QUEUED to RUNNING.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
DURATION = Histogram(
    "chronoverse_job_duration_seconds",
    "From RUNNING to the recorded outcome, by kind.",
    ["kind"],
    buckets=(0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 1800, 3600),
)
OUTCOMES = Counter(
    "chronoverse_job_outcomes",
    "Recorded outcomes by kind, status and failure kind.",
    ["kind", "status", "failure_kind"],
)
STALE_RESULTS = Counter(
    "chronoverse_job_results_discarded",
    "Results not recorded because the lease was lost (fencing).",
)
TERMINATIONS = Counter(
    "chronoverse_workflows_auto_terminated", "Workflows terminated for consecutive failures."
)


@dataclass(frozen=True, kw_only=True)
class Claim:
    job_id: UUID
    workflow_id: UUID
    user_id: UUID
    kind: WorkflowKind
    payload: dict[str, Any]
    attempt: int
    lease_token: int
    generation: int

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
            lease_token=row["lease_token"],
            generation=row["generation"],
        )


_db_retry = retry(
    # PoolClosed is an OperationalError too, but retrying it cannot help: the worker is stopping.
    retry=retry_if_exception_type(psycopg.OperationalError)
    & retry_if_not_exception_type(PoolClosed),
    wait=wait_exponential(multiplier=0.2, max=5),
    stop=stop_after_delay(60),
    reraise=True,
)


class Executor:
    def __init__(
        self,
        *,
        containers: ContainerRunner | None = None,
        pool: Pool,
        worker_id: str,
        lease_s: float,
        policy: RetryPolicy,
        http: httpx.Client,
        egress: EgressPolicy,
        secrets: SecretBox,
        concurrency: int = 1,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._pool = pool
        self._worker_id = worker_id
        self._lease_s = lease_s
        self._policy = policy
        self._http = http
        self._egress = egress
        self._secrets = secrets
        self._clock = clock
        self._containers = containers
        self.leases = LeaseBook()
        # Runs the jobs that are more than a claim and a record: CONTAINERs, endpoint checks.
        self._jobs = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="job")

    def close(self) -> None:
        """Stop the job pool; jobs not started yet stay unclaimed (their messages uncommitted)."""
        self._jobs.shutdown(wait=False, cancel_futures=True)

    def handle(self, batch: Sequence[Record[JobMessage]]) -> None:
        """The consumer's handler: returning means every job in the batch is accounted for."""
        messages = [record.value for record in batch]
        quick = self.run_liveness([message.job_id for message in messages])
        futures = [
            self._jobs.submit(self.execute, message)
            for message in messages
            if message.job_id not in quick
        ]
        wait(futures)
        for future in futures:
            future.result()  # a job that could not be accounted for fails the batch

    def run_liveness(self, job_ids: list[UUID]) -> set[UUID]:
        """Claim the liveness HEARTBEATs among these jobs, run and record them together; return
        the ids claimed. The others are left alone, to be claimed one by one."""
        claims = self.claim_liveness(job_ids)
        if not claims:
            return set()
        for claim in claims:
            self.leases.add(claim.job_id, claim.lease_token)
        try:
            completed: list[Claim] = []
            for claim in claims:
                outcome = decide_outcome(
                    self._run(claim), attempt=claim.attempt, policy=self._policy, now=self._clock()
                )
                if outcome.status is JobStatus.COMPLETED:
                    completed.append(claim)
                else:  # a stored payload that no longer validates: the usual path
                    self.record(claim.job_id, claim.lease_token, claim.kind, outcome)
            if completed:
                self.record_completed(completed)
        finally:
            for claim in claims:
                self.leases.remove(claim.job_id)
        return {claim.job_id for claim in claims}

    def execute(self, message: JobMessage) -> None:
        claim = self._claim(message.job_id)
        if claim is None:
            DUPLICATES.inc()
            logger.debug(
                "job %s not claimable (duplicate, finished or not due)",
                message.job_id,
                extra={"action": "job_unclaimable", "job_id": str(message.job_id)},
            )
            return
        logger.info(
            "running job %s (attempt %d)",
            claim.job_id,
            claim.attempt,
            extra={
                "action": "job_started",
                "job_id": str(claim.job_id),
                "workflow_id": str(claim.workflow_id),
                "attempt": claim.attempt,
            },
        )
        # The lease is renewed until the outcome is written, not just until the job ends.
        self.leases.add(claim.job_id, claim.lease_token)
        try:
            result = self._run(claim)
            outcome = decide_outcome(
                result, attempt=claim.attempt, policy=self._policy, now=self._clock()
            )
            self.record(claim.job_id, claim.lease_token, claim.kind, outcome)
        finally:
            self.leases.remove(claim.job_id)

    def _claim(self, job_id: UUID) -> Claim | None:
        claims = self._claim_jobs([job_id], liveness_only=False)
        return claims[0] if claims else None

    def claim_liveness(self, job_ids: list[UUID]) -> list[Claim]:
        """Claim the liveness HEARTBEATs among these jobs, in one statement."""
        return self._claim_jobs(job_ids, liveness_only=True)

    @_db_retry
    def _claim_jobs(self, job_ids: list[UUID], *, liveness_only: bool) -> list[Claim]:
        with self._pool.connection() as conn:
            rows = conn.execute(
                QUERIES.claim_jobs,
                {
                    "ids": job_ids,
                    "liveness_only": liveness_only,
                    "owner": self._worker_id,
                    "lease_s": self._lease_s,
                },
            ).fetchall()
        for row in rows:
            if row["queued_at"] is not None:
                QUEUE_TO_START.observe(
                    max(0.0, (row["started_at"] - row["queued_at"]).total_seconds())
                )
        return [Claim.from_row(row) for row in rows]

    @_db_retry
    def record_completed(self, claims: list[Claim]) -> None:
        """Record successes in one transaction, each guarded by its lease token."""
        with self._pool.connection() as conn:
            conn.execute(QUERIES.lock_workflows, {"ids": [c.workflow_id for c in claims]})
            rows = conn.execute(
                QUERIES.complete_jobs,
                {"ids": [c.job_id for c in claims], "tokens": [c.lease_token for c in claims]},
            ).fetchall()
        recorded = {row["id"] for row in rows}
        for claim in claims:
            if claim.job_id not in recorded:
                STALE_RESULTS.inc()
                logger.warning(
                    "job %s: lease %d lost; result COMPLETED discarded",
                    claim.job_id,
                    claim.lease_token,
                    extra={"action": "job_result_discarded", "job_id": str(claim.job_id)},
                )
        if not rows:
            return
        OUTCOMES.labels(WorkflowKind.HEARTBEAT.value, JobStatus.COMPLETED.value, "").inc(len(rows))
        duration = DURATION.labels(WorkflowKind.HEARTBEAT.value)
        for row in rows:
            duration.observe(max(0.0, (row["finished_at"] - row["started_at"]).total_seconds()))
        # One line for the batch, not two per job: at thousands of jobs a second, per-job lines
        # were an eighth of this worker's CPU.
        logger.info(
            "%d liveness job(s) COMPLETED",
            len(rows),
            extra={
                "action": "jobs_recorded",
                "status": JobStatus.COMPLETED.value,
                "job_ids": [str(row["id"]) for row in rows],
            },
        )

    def _run(self, claim: Claim) -> RunResult:
        try:
            if claim.kind is WorkflowKind.HEARTBEAT:
                # Header values are stored sealed: the peer gets the plain ones.
                payload = open_payload(self._secrets, WorkflowKind.HEARTBEAT, claim.payload)
                return run_heartbeat(
                    HeartbeatPayload.model_validate(payload), self._http, self._egress
                )
            if self._containers is None:
                return RunResult.system_failure("this worker has no container runtime")
            return self._containers.run(
                job_id=claim.job_id,
                workflow_id=claim.workflow_id,
                user_id=claim.user_id,
                generation=claim.generation,
                payload=claim.payload,
                lease_token=claim.lease_token,
                record_container=lambda cid: self._set_container(claim, cid),
            )
        except SecretError as exc:
            return RunResult.user_failure(f"cannot read the payload's secrets: {exc}")
        except ValidationError as exc:
            # Field names and messages only: pydantic's own text quotes the input values, which
            # may be plain secrets.
            problems = "; ".join(
                f"{error.field} {error.message}" for error in field_errors(exc, prefix="payload")
            )
            return RunResult.user_failure(f"stored payload is invalid: {problems}")
        except Exception as exc:
            logger.exception(
                "job %s crashed the runner",
                claim.job_id,
                extra={"action": "job_runner_error", "job_id": str(claim.job_id)},
            )
            return RunResult.system_failure(f"worker error: {exc}")

    @_db_retry
    def _set_container(self, claim: Claim, container_id: str) -> bool:
        with self._pool.connection() as conn:
            row = conn.execute(
                QUERIES.set_container,
                {"job_id": claim.job_id, "token": claim.lease_token, "container_id": container_id},
            ).fetchone()
        return row is not None

    @_db_retry
    def owned(self, leases: list[tuple[UUID, int]]) -> set[UUID]:
        """Which of these (job, token) pairs a live lease owns (for the container reaper)."""
        with self._pool.connection() as conn:
            rows = conn.execute(
                QUERIES.owned_leases,
                {"ids": [j for j, _ in leases], "tokens": [t for _, t in leases]},
            ).fetchall()
        return {row["id"] for row in rows}

    def hand_back_all(self) -> int:
        """Return the jobs still running to PENDING (a stopping worker); the attempt is not counted.

        Their threads may still finish, but their writes then find the job no longer RUNNING
        under their token and change nothing.
        """
        held = self.leases.snapshot()
        with self._pool.connection() as conn:
            for job_id, token in held.items():
                conn.execute(
                    QUERIES.hand_back_job,
                    {
                        "job_id": job_id,
                        "token": token,
                        "error": "handed back: its worker stopped before the job finished",
                    },
                )
        for job_id in held:
            logger.warning(
                "handed back unfinished job %s",
                job_id,
                extra={"action": "job_handed_back", "job_id": str(job_id)},
            )
        return len(held)

    @_db_retry
    def record(self, job_id: UUID, token: int, kind: WorkflowKind, outcome: Outcome) -> bool:
        """Write the outcome if the lease is still ours; False when it was lost."""
        with self._pool.connection() as conn:
            return self.apply(conn, job_id, token, kind, outcome)

    def apply(
        self, conn: Conn, job_id: UUID, token: int, kind: WorkflowKind, outcome: Outcome
    ) -> bool:
        """Write an outcome in the caller's transaction, guarded by the lease token."""
        params = {"job_id": job_id, "token": token}
        workflow = conn.execute(QUERIES.lock_workflow_of_job, {"job_id": job_id}).fetchone()
        if (
            workflow is not None
            and workflow["terminated_at"] is not None
            and outcome.status is not JobStatus.COMPLETED
        ):
            row = conn.execute(
                QUERIES.cancel_job,
                {**params, "exit_code": outcome.exit_code, "error": workflow["terminated_reason"]},
            ).fetchone()
            outcome = replace(
                outcome, status=JobStatus.CANCELED, failure_kind=None, counts_as_failure=False
            )
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
                self._count_failure(conn, row["workflow_id"], outcome.error)
        if row is None:
            STALE_RESULTS.inc()
            logger.warning(
                "job %s: lease %d lost; result %s discarded",
                job_id,
                token,
                outcome.status,
                extra={"action": "job_result_discarded", "job_id": str(job_id)},
            )
            return False
        failure = outcome.failure_kind.value if outcome.failure_kind else ""
        OUTCOMES.labels(kind.value, outcome.status.value, failure).inc()
        if row["started_at"] is not None and row["finished_at"] is not None:
            DURATION.labels(kind.value).observe(
                max(0.0, (row["finished_at"] - row["started_at"]).total_seconds())
            )
        logger.info(
            "job %s %s%s",
            job_id,
            outcome.status.value,
            f": {outcome.error}" if outcome.error else "",
            extra={
                "action": "job_recorded",
                "job_id": str(job_id),
                "status": outcome.status.value,
                "failure_kind": failure,
            },
        )
        return True

    def _count_failure(self, conn: Conn, workflow_id: UUID, error: str | None) -> None:
        counted = conn.execute(QUERIES.count_failure, {"workflow_id": workflow_id}).fetchone()
        if counted is None:
            return  # already terminated
        failures = counted["consecutive_job_failures_count"]
        if failures >= counted["max_consecutive_job_failures_allowed"]:
            lifecycle.terminate(conn, workflow_id, reason=termination_reason(failures, error))
            TERMINATIONS.inc()
            logger.warning(
                "workflow %s terminated after %d consecutive failures",
                workflow_id,
                failures,
                extra={"action": "workflow_auto_terminated", "workflow_id": str(workflow_id)},
            )
