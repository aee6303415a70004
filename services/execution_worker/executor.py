"""The executor: claims the jobs of a batch, runs each on the job pool and records its outcome.

Liveness HEARTBEATs (:func:`chronoverse.payloads.is_liveness`) have nothing to run, so the cost of
one is its claim and its record. The consumer hands the executor a batch of messages; the
liveness jobs among them are claimed in one statement and their successes recorded in one
transaction, while every other job is claimed and run on its own thread of the job pool.

The queries are the :class:`~services.execution_worker.store.JobStore`'s; what a run's result
means is decided by :mod:`services.execution_worker.results` and
:func:`chronoverse.scheduling.decide_outcome`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from datetime import datetime
from uuid import UUID

import httpx
from pydantic import ValidationError

from chronoverse.domain import JobStatus, WorkflowKind, utcnow
from chronoverse.egress import EgressPolicy
from chronoverse.jobs import JobMessage
from chronoverse.kafka.consumer import Record
from chronoverse.payloads import HeartbeatPayload
from chronoverse.scheduling import Outcome, RetryPolicy, RunResult, decide_outcome
from chronoverse.secrets import SecretBox, SecretError, open_payload
from services.execution_worker import metrics, results
from services.execution_worker.containers import ContainerRunner
from services.execution_worker.heartbeat import run_heartbeat
from services.execution_worker.leases import LeaseBook
from services.execution_worker.store import Claim, JobStore

logger = logging.getLogger(__name__)

HANDED_BACK = "handed back: its worker stopped before the job finished"


class Executor:
    """Runs the jobs of the consumer's batches, each under the lease its claim took."""

    def __init__(
        self,
        *,
        store: JobStore,
        leases: LeaseBook,
        policy: RetryPolicy,
        http: httpx.Client,
        egress: EgressPolicy,
        secrets: SecretBox,
        containers: ContainerRunner | None = None,
        concurrency: int = 1,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._store = store
        self.leases = leases
        self._policy = policy
        self._http = http
        self._egress = egress
        self._secrets = secrets
        self._containers = containers
        self._clock = clock
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
        claims = self._store.claim(job_ids, liveness_only=True)
        metrics.claimed(claims)
        if not claims:
            return set()
        for claim in claims:
            self.leases.add(claim.job_id, claim.lease_token)
        try:
            completed: list[Claim] = []
            for claim in claims:
                outcome = self._outcome(claim, self._run(claim))
                if outcome.status is JobStatus.COMPLETED:
                    completed.append(claim)
                else:  # a stored payload that no longer validates: the usual path
                    self._record(claim, outcome)
            if completed:
                self._record_completed(completed)
        finally:
            for claim in claims:
                self.leases.remove(claim.job_id)
        return {claim.job_id for claim in claims}

    def execute(self, message: JobMessage) -> None:
        """Claim one job, run it and record its outcome; a job not claimable is left alone."""
        claims = self._store.claim([message.job_id])
        metrics.claimed(claims)
        if not claims:
            metrics.DUPLICATES.inc()
            logger.debug(
                "job %s not claimable (duplicate, finished or not due)",
                message.job_id,
                extra={"action": "job_unclaimable", "job_id": str(message.job_id)},
            )
            return
        [claim] = claims
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
            self._record(claim, self._outcome(claim, self._run(claim)))
        finally:
            self.leases.remove(claim.job_id)

    def hand_back_all(self) -> int:
        """Return the jobs still running to PENDING (a stopping worker); the attempt is not counted.

        Their threads may still finish, but their writes then find the job no longer RUNNING
        under their token and change nothing.
        """
        held = self.leases.snapshot()
        self._store.hand_back(held, error=HANDED_BACK)
        for job_id in held:
            logger.warning(
                "handed back unfinished job %s",
                job_id,
                extra={"action": "job_handed_back", "job_id": str(job_id)},
            )
        return len(held)

    def _run(self, claim: Claim) -> RunResult:
        try:
            if claim.kind is WorkflowKind.HEARTBEAT:
                # Header values are stored sealed: the peer gets the plain ones.
                payload = open_payload(self._secrets, WorkflowKind.HEARTBEAT, claim.payload)
                return run_heartbeat(
                    HeartbeatPayload.model_validate(payload), self._http, self._egress
                )
            if self._containers is None:
                return results.no_container_runtime()
            return self._containers.run(
                job_id=claim.job_id,
                workflow_id=claim.workflow_id,
                user_id=claim.user_id,
                generation=claim.generation,
                payload=claim.payload,
                lease_token=claim.lease_token,
                record_container=lambda container_id: self._store.set_container(
                    claim.job_id, claim.lease_token, container_id
                ),
                attempt=claim.attempt,
            )
        except SecretError as exc:
            return results.unreadable_secrets(exc)
        except ValidationError as exc:
            return results.invalid_payload(exc)
        except Exception as exc:
            logger.exception(
                "job %s crashed the runner",
                claim.job_id,
                extra={"action": "job_runner_error", "job_id": str(claim.job_id)},
            )
            return results.worker_error(exc)

    def _outcome(self, claim: Claim, result: RunResult) -> Outcome:
        return decide_outcome(result, attempt=claim.attempt, policy=self._policy, now=self._clock())

    def _record(self, claim: Claim, outcome: Outcome) -> None:
        recorded = self._store.record(claim.job_id, claim.lease_token, outcome)
        metrics.recorded(claim.job_id, claim.lease_token, claim.kind, recorded)

    def _record_completed(self, claims: list[Claim]) -> None:
        finished = self._store.complete(claims)
        written = {job.job_id for job in finished}
        for claim in claims:
            if claim.job_id not in written:
                metrics.discarded(claim.job_id, claim.lease_token, JobStatus.COMPLETED)
        metrics.completed(finished)
