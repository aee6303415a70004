"""The execution worker's Prometheus metrics, and the log lines of the outcomes they count.

Both the executor and the lease keeper record outcomes; :func:`recorded` reports one the same way
for either.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from uuid import UUID

from prometheus_client import Counter, Histogram

from chronoverse.domain import JobStatus, WorkflowKind
from services.execution_worker.store import Claim, Finished, Recorded

logger = logging.getLogger(__name__)

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
DEFINITIONS_REBUILT = Counter(
    "chronoverse_definitions_rebuilt",
    "Container definitions missing from Redis and rebuilt from Postgres.",
)
CONTAINERS_REAPED = Counter(
    "chronoverse_containers_reaped", "Labelled containers removed because no live lease owned them."
)
VOLUMES_REMOVED = Counter(
    "chronoverse_volumes_removed", "Docker volumes removed because their owner deleted them."
)


def claimed(claims: Sequence[Claim]) -> None:
    for claim in claims:
        if claim.queued_at is not None:
            QUEUE_TO_START.observe(max(0.0, (claim.started_at - claim.queued_at).total_seconds()))


def discarded(job_id: UUID, token: int, status: JobStatus) -> None:
    """A result not written: the lease was lost (another worker recovered the job)."""
    STALE_RESULTS.inc()
    logger.warning(
        "job %s: lease %d lost; result %s discarded",
        job_id,
        token,
        status,
        extra={"action": "job_result_discarded", "job_id": str(job_id)},
    )


def recorded(job_id: UUID, token: int, kind: WorkflowKind, result: Recorded) -> None:
    """Count and log what :meth:`JobStore.record` did with an outcome."""
    outcome = result.outcome
    if not result.written:
        discarded(job_id, token, outcome.status)
        return
    if result.terminated_after is not None:
        TERMINATIONS.inc()
        logger.warning(
            "workflow %s terminated after %d consecutive failures",
            result.workflow_id,
            result.terminated_after,
            extra={"action": "workflow_auto_terminated", "workflow_id": str(result.workflow_id)},
        )
    failure = outcome.failure_kind.value if outcome.failure_kind else ""
    OUTCOMES.labels(kind.value, outcome.status.value, failure).inc()
    if result.duration_s is not None:
        DURATION.labels(kind.value).observe(result.duration_s)
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


def completed(finished: Sequence[Finished]) -> None:
    """Count and log a batch of liveness successes, in one line rather than one per job: at
    thousands of jobs a second, per-job lines were an eighth of this worker's CPU."""
    if not finished:
        return
    OUTCOMES.labels(WorkflowKind.HEARTBEAT.value, JobStatus.COMPLETED.value, "").inc(len(finished))
    duration = DURATION.labels(WorkflowKind.HEARTBEAT.value)
    for job in finished:
        if job.duration_s is not None:
            duration.observe(job.duration_s)
        if job.queued_at is not None and job.started_at is not None:  # claimed and finished at once
            QUEUE_TO_START.observe(max(0.0, (job.started_at - job.queued_at).total_seconds()))
    logger.info(
        "%d liveness job(s) COMPLETED",
        len(finished),
        extra={
            "action": "jobs_recorded",
            "status": JobStatus.COMPLETED.value,
            "job_ids": [str(job.job_id) for job in finished],
        },
    )
