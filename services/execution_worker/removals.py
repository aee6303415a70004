"""Removing a finished job's container off the job's critical path.

Once a container has exited and its output has been read to the end, nothing the outcome depends
on is left in it, so its removal runs on a thread of its own while the job's log is ended and its
outcome recorded: the outcome does not wait for Docker's remove. Only when that outcome is final
(:func:`after_the_outcome`): a run that ends in a SYSTEM failure (Docker failed while it ran, the
container could not be stopped, the lease was lost) is retried, maybe at once and by another
worker on the same daemon, so its container is removed before the outcome is recorded, as the
next attempt would otherwise find it still there, or still running.

While a removal is under way its job is :meth:`Removals.pending`, which the worker's reaper counts
as its own, so the reaper never salvages a container its worker is already removing; other
workers' reapers leave a container being removed, or stopped only moments ago, to its worker. A
removal that fails is logged, and one that never runs (the worker dies first) leaves an exited
container whose job no live lease owns: a later reap of any worker salvages and removes it
(:mod:`services.execution_worker.reaper`). A new attempt of the job waits for the removal first
(:meth:`Removals.wait`), so that it never finds its own worker's container as a leftover.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_all
from typing import Any
from uuid import UUID

from docker.errors import DockerException

from chronoverse.domain import FailureKind
from chronoverse.scheduling import RunResult
from services.execution_worker.leftovers import remove_container

logger = logging.getLogger(__name__)


def after_the_outcome(result: RunResult) -> bool:
    """Whether the run's container may be removed after its outcome is recorded: the outcome is
    final (the container exited, or the job failed for good), so no retry can meet it."""
    return result.failure_kind is not FailureKind.SYSTEM


class Removals:
    """Removes exited job containers on a small pool of threads, tracking those under way."""

    def __init__(self, *, max_workers: int) -> None:
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="remove")
        self._lock = threading.Lock()
        self._pending: dict[UUID, Future[None]] = {}

    def remove(self, container: Any, job_id: UUID) -> None:
        """Remove the container (forcibly: it may still run when its job ended otherwise)."""
        with self._lock:
            future = self._pool.submit(remove, container, job_id)
            self._pending[job_id] = future
        future.add_done_callback(lambda done: self._forget(job_id, done))

    def pending(self) -> set[UUID]:
        """The jobs whose container is being removed."""
        with self._lock:
            return set(self._pending)

    def wait(self, job_id: UUID, *, timeout_s: float | None = None) -> None:
        """Wait until the job's container removal, if one is under way, has ended."""
        with self._lock:
            future = self._pending.get(job_id)
        if future is not None:
            wait_all([future], timeout=timeout_s)

    def close(self, *, timeout_s: float = 30.0) -> None:
        """Wait (bounded) for the removals under way; what is left is the reaper's."""
        with self._lock:
            futures = list(self._pending.values())
        _, left = wait_all(futures, timeout=timeout_s)
        if left:
            logger.warning(
                "%d container removals unfinished at shutdown; the reaper will remove them",
                len(left),
                extra={"action": "container_remove_unfinished"},
            )
        self._pool.shutdown(wait=False)

    def _forget(self, job_id: UUID, done: Future[None]) -> None:
        with self._lock:
            if self._pending.get(job_id) is done:
                del self._pending[job_id]


def remove(container: Any, job_id: UUID) -> None:
    """Remove the container now (forcibly); a failure is logged and left to the reaper."""
    try:
        remove_container(container)
    except Exception as exc:  # Docker refused, or could not be reached: the reaper's then
        logger.warning(
            "could not remove container %s: %s; the reaper will",
            container.id,
            exc,
            exc_info=None if isinstance(exc, DockerException) else exc,
            extra={"action": "container_remove_failed", "job_id": str(job_id)},
        )
