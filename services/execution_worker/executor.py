"""The executor: claims the jobs of a batch, runs each on the job pool and records its outcome.

Liveness HEARTBEATs (:func:`chronoverse.payloads.is_liveness`) have nothing to run, so the cost of
one is its claim and its record. The consumer hands the executor a batch of messages; the
liveness jobs among them are claimed in one statement and their successes recorded in one
transaction, while every other job is claimed and run on its own thread of the job pool.

The queries are the :class:`~services.execution_worker.store.JobStore`'s; what a run's result
means is decided by :mod:`services.execution_worker.results` and
:func:`chronoverse.scheduling.decide_outcome`.

A stopping worker first stops claiming (a claim under way is waited for), then hands back the jobs
it holds: every job it ever claimed is either finished or handed back, none is left RUNNING under
a lease that nobody renews.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from datetime import datetime
from uuid import UUID

import httpx
import psycopg
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
        self._claims = threading.Condition()
        self._claiming = 0  # claims under way
        self._closed = False

    def close(self, *, timeout_s: float = 30.0) -> None:
        """Stop claiming and drop the jobs not started: they stay unclaimed (their messages
        uncommitted). Returns once no claim is under way, so every claim made is in the book."""
        with self._claims:
            self._closed = True
            if not self._claims.wait_for(lambda: self._claiming == 0, timeout=timeout_s):
                logger.error(
                    "a claim still under way after %.0fs; its job may be left to lease expiry",
                    timeout_s,
                    extra={"action": "claim_unfinished"},
                )
        self._jobs.shutdown(wait=False, cancel_futures=True)

    def stop(self) -> int:
        """A stopping worker: stop claiming, then hand back the jobs still running. In this
        order, or a job claimed after the hand-back would stay RUNNING with no lease renewal."""
        self.close()
        return self.hand_back_all()

    def _claim(self, job_ids: Sequence[UUID], *, liveness_only: bool = False) -> list[Claim]:
        """Claim jobs and add their leases to the book (nothing once closed)."""
        with self._claims:
            if self._closed:
                return []
            self._claiming += 1
        try:
            claims = self._store.claim(job_ids, liveness_only=liveness_only)
            for claim in claims:
                self.leases.add(claim.job_id, claim.lease_token)
            return claims
        finally:
            with self._claims:
                self._claiming -= 1
                self._claims.notify_all()

    def handle(self, batch: Sequence[Record[JobMessage]]) -> None:
        """The consumer's handler: returning means every job in the batch is accounted for."""
        messages = [record.value for record in batch]
        beats = self.run_beats(messages)
        rest = [message for message in messages if message.job_id not in beats]
        quick = self.run_liveness([message.job_id for message in rest]) if rest else set()
        futures = [
            self._jobs.submit(self.execute, message)
            for message in rest
            if message.job_id not in quick
        ]
        wait(futures)
        for future in futures:
            future.result()  # a job that could not be accounted for fails the batch

    def run_beats(self, messages: Sequence[JobMessage]) -> set[UUID]:
        """Claim and complete at once the liveness beats with the canonical empty payload among
        these jobs (one transaction, one write of each job); return their ids. Any other job is
        left alone."""
        with self._claims:
            if self._closed:
                return set()
            self._claiming += 1
        try:
            finished = self._store.run_beats([(m.job_id, m.workflow_id) for m in messages])
        finally:
            with self._claims:
                self._claiming -= 1
                self._claims.notify_all()
        metrics.completed(finished)
        return {job.job_id for job in finished}

    def run_liveness(self, job_ids: list[UUID]) -> set[UUID]:
        """Claim the liveness HEARTBEATs among these jobs, run and record them together; return
        the ids claimed. The others are left alone, to be claimed one by one."""
        claims = self._claim(job_ids, liveness_only=True)
        metrics.claimed(claims)
        if not claims:
            return set()
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
        claims = self._claim([message.job_id])
        metrics.claimed(claims)
        if not claims:
            if self._closed:
                return  # stopping: the message stays uncommitted, for the next worker
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
        # The lease (in the book since the claim) is renewed until the outcome is written, not
        # just until the job ends.
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
                record_logs_lost=lambda: self._record_logs_lost(claim),
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

    def _record_logs_lost(self, claim: Claim) -> None:
        """Mark the gap in the job's log; the outcome is recorded next, whatever happens here."""
        try:
            self._store.mark_logs_incomplete(claim.job_id, claim.lease_token)
        except psycopg.Error as exc:
            logger.error(
                "could not record the log gap of job %s: %s",
                claim.job_id,
                exc,
                exc_info=exc,
                extra={"action": "logs_gap_unrecorded", "job_id": str(claim.job_id)},
            )

    def _outcome(self, claim: Claim, result: RunResult) -> Outcome:
        return decide_outcome(
            result, attempt=claim.counted_attempt, policy=self._policy, now=self._clock()
        )

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
