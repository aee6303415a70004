"""Leases: the ones this worker holds, their renewal, and the recovery of jobs whose worker died.

A claimed job's lease is renewed (every third of its length) until its outcome is written. A job
whose lease lapsed is treated as a SYSTEM failure, "worker lost", and retried or failed like any
other, guarded by the lapsed token so that two recovering workers cannot both write it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime
from uuid import UUID

from chronoverse.domain import utcnow
from chronoverse.runtime import every
from chronoverse.scheduling import RetryPolicy, RunResult, decide_outcome
from services.execution_worker import metrics
from services.execution_worker.store import JobStore

logger = logging.getLogger(__name__)

WORKER_LOST = "worker lost: its lease expired before it recorded a result"


class LeaseBook:
    """The leases this worker holds: what the renewer renews."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[UUID, int] = {}

    def add(self, job_id: UUID, token: int) -> None:
        with self._lock:
            self._tokens[job_id] = token

    def remove(self, job_id: UUID) -> None:
        with self._lock:
            self._tokens.pop(job_id, None)

    def snapshot(self) -> dict[UUID, int]:
        with self._lock:
            return dict(self._tokens)


class LeaseKeeper:
    """Renews this worker's leases, and recovers jobs whose worker stopped renewing."""

    def __init__(
        self,
        store: JobStore,
        leases: LeaseBook,
        *,
        policy: RetryPolicy,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._store = store
        self._leases = leases
        self._policy = policy
        self._clock = clock

    def run(self, stop: threading.Event) -> None:
        """Renew and recover on separate threads: slow recovery must never delay renewal."""
        lease_s = self._store.lease_s
        recovery = threading.Thread(
            target=every,
            args=(stop, lease_s / 2, self.recover_expired),
            kwargs={"name": "lease recovery"},
            name="lease-recovery",
            daemon=True,
        )
        recovery.start()
        every(stop, lease_s / 3, self.renew, name="lease renewal")
        recovery.join(timeout=5)

    def renew(self) -> None:
        held = self._leases.snapshot()
        if not held:
            return
        for job_id in set(held) - self._store.renew(held):
            logger.warning(
                "lost the lease of job %s; its result will be discarded",
                job_id,
                extra={"action": "lease_lost", "job_id": str(job_id)},
            )

    def recover_expired(self, limit: int = 100) -> int:
        """Treat jobs with lapsed leases as SYSTEM failures ("worker lost"): retry or fail them.

        Each job gets its own transaction; the write is conditional on the token that lapsed, so
        when two workers recover the same job, one of them changes nothing.
        """
        lapsed = self._store.lapsed(limit)
        for lease in lapsed:
            outcome = decide_outcome(
                RunResult.system_failure(WORKER_LOST),
                attempt=lease.counted_attempt,
                policy=self._policy,
                now=self._clock(),
            )
            logger.warning(
                "recovering job %s from %s: lease expired",
                lease.job_id,
                lease.lease_owner,
                extra={"action": "lease_expired", "job_id": str(lease.job_id)},
            )
            recorded = self._store.record_lapsed(lease, outcome)
            metrics.recorded(lease.job_id, lease.lease_token, lease.kind, recorded)
        return len(lapsed)
