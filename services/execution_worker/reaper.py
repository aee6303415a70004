"""The container reaper: removes labelled containers that no live lease owns.

A worker always removes its job's container, but one that crashed cannot: its containers (and
the helper containers that set up volumes) carry this installation's labels, and every worker's
reaper removes those whose job no live lease owns. A job container's output is kept first, as its
attempt's (``salvage``: :meth:`~services.execution_worker.leftovers.Leftovers.salvage`), so a
reaper that gets there before the job's next attempt loses nothing.

A finished job's container is removed by its worker just after the outcome is recorded
(:mod:`services.execution_worker.removals`), when no live lease owns it any more: a container
being removed is left alone, and so is one that stopped less than ``removal_grace_s`` ago, so
that no other worker on the same Docker daemon salvages what its own worker is about to remove.
A container still running is never left: it is the run of a worker that died.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any
from uuid import UUID

import docker
from docker.errors import DockerException, NotFound

from chronoverse.definitions import LABEL_HELPER, LABEL_INSTALLATION, LABEL_JOB, LABEL_LEASE
from chronoverse.domain import utcnow
from services.execution_worker.leftovers import STOPPED, remove_container
from services.execution_worker.metrics import CONTAINERS_REAPED

logger = logging.getLogger(__name__)

HELPER_MAX_AGE_S = 300.0
# A stopped job container is its worker's to remove for this long after it stopped. Its worker
# asks Docker to remove it before it even ends the job's log and records the outcome, so one still
# there (and not being removed) after this is a removal that failed or never ran: the reaper's.
REMOVAL_GRACE_S = 5.0


class Reaper:
    """Removes labelled containers that no live lease owns (e.g. after a worker crashed)."""

    def __init__(
        self,
        docker_client: docker.DockerClient,
        owned: Callable[[list[tuple[UUID, int]]], set[UUID]],
        mine: Callable[[], set[UUID]],
        *,
        installation: str,
        salvage: Callable[[Any], bool] | None = None,
        removal_grace_s: float = REMOVAL_GRACE_S,
    ) -> None:
        self._docker = docker_client
        self._owned = owned
        self._mine = mine
        self._installation = installation
        self._salvage = salvage
        self._removal_grace_s = removal_grace_s

    def reap(self) -> int:
        found: list[tuple[Any, UUID, int]] = []
        label = f"{LABEL_INSTALLATION}={self._installation}"
        for container in self._docker.containers.list(all=True, filters={"label": label}):
            if container.labels.get(LABEL_HELPER) and _older_than(container, HELPER_MAX_AGE_S):
                # Created for a moment and never started; a crash left it behind.
                try:
                    container.remove(force=True)
                except NotFound:
                    pass
                continue
            if left_to_its_worker(
                container.status, container.attrs, now=utcnow(), grace_s=self._removal_grace_s
            ):
                continue
            try:
                found.append(
                    (
                        container,
                        UUID(container.labels[LABEL_JOB]),
                        int(container.labels[LABEL_LEASE]),
                    )
                )
            except (KeyError, ValueError):
                continue  # not ours to judge
        if not found:
            return 0
        leases = [(job_id, token) for _, job_id, token in found]
        alive = self._owned(leases) | self._mine()
        removed = 0
        for container, job_id, _ in found:
            if job_id in alive:
                continue
            try:
                if self._salvage is not None:
                    # Stops it, keeps its output, removes it; False when it was going already.
                    if not self._salvage(container):
                        continue
                elif not remove_container(container):
                    continue
            except NotFound:
                continue
            except DockerException as exc:
                logger.error(
                    "could not reap container %s of job %s: %s; trying again later",
                    container.short_id,
                    job_id,
                    exc,
                    exc_info=exc,
                    extra={"action": "container_reap_failed", "job_id": str(job_id)},
                )
                continue
            removed += 1
            CONTAINERS_REAPED.inc()
            logger.warning(
                "reaped container %s of job %s: no live lease owns it",
                container.short_id,
                job_id,
                extra={"action": "container_reaped", "job_id": str(job_id)},
            )
        return removed


def left_to_its_worker(
    status: str, attrs: Mapping[str, Any], *, now: datetime, grace_s: float
) -> bool:
    """Whether a job container (Docker's ``status`` and inspect ``attrs``) is its own worker's to
    remove: being removed, or stopped (or created and never started) less than ``grace_s`` ago.
    Never one that runs."""
    if status not in STOPPED:
        return False
    if status == "removing":
        return True
    state = attrs.get("State") or {}
    known = [w for w in (_when(attrs.get("Created")), _when(state.get("FinishedAt"))) if w]
    return bool(known) and (now - max(known)).total_seconds() < grace_s


def _older_than(container: Any, seconds: float) -> bool:
    when = _when(container.attrs.get("Created"))
    return when is not None and (utcnow() - when).total_seconds() > seconds


def _when(stamp: object) -> datetime | None:
    """One of Docker's timestamps, with nanoseconds: "2026-11-29T17:49:43.123456789Z"."""
    try:
        return datetime.fromisoformat(str(stamp or "")[:26].rstrip("Z") + "+00:00")
    except ValueError:
        return None
