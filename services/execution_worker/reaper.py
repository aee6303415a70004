"""The container reaper: removes labelled containers that no live lease owns.

A worker always removes its job's container, but one that crashed cannot: its containers (and
the helper containers that set up volumes) carry this installation's labels, and every worker's
reaper removes those whose job no live lease owns. A job container's output is kept first, as its
attempt's (``salvage``: :meth:`~services.execution_worker.leftovers.Leftovers.salvage`), so a
reaper that gets there before the job's next attempt loses nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any
from uuid import UUID

import docker
from docker.errors import DockerException, NotFound

from chronoverse.definitions import LABEL_HELPER, LABEL_INSTALLATION, LABEL_JOB, LABEL_LEASE
from chronoverse.domain import utcnow
from services.execution_worker.metrics import CONTAINERS_REAPED

logger = logging.getLogger(__name__)

HELPER_MAX_AGE_S = 300.0


class Reaper:
    """Removes labelled containers that no live lease owns (e.g. after a worker crashed)."""

    def __init__(
        self,
        docker_client: docker.DockerClient,
        owned: Callable[[list[tuple[UUID, int]]], set[UUID]],
        mine: Callable[[], set[UUID]],
        *,
        installation: str,
        salvage: Callable[[Any], None] | None = None,
    ) -> None:
        self._docker = docker_client
        self._owned = owned
        self._mine = mine
        self._installation = installation
        self._salvage = salvage

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
                    self._salvage(container)  # stops it, keeps its output, removes it
                else:
                    container.remove(force=True)
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


def _older_than(container: Any, seconds: float) -> bool:
    created = str(container.attrs.get("Created", ""))
    try:
        # Docker gives nanoseconds: "2026-11-29T17:49:43.123456789Z".
        when = datetime.fromisoformat(created[:26].rstrip("Z") + "+00:00")
    except ValueError:
        return False
    return (utcnow() - when).total_seconds() > seconds
