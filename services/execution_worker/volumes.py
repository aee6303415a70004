"""Named volumes of CONTAINER jobs: their rows in Postgres, their Docker volumes, their sizes.

A job's first use of a volume writes its row (``touch``) and creates the Docker volume. The server
never touches Docker: ``DELETE /volumes/{name}`` only deletes the row, and the :class:`Janitor`
of every execution worker then removes Docker volumes of its installation that no row owns
(Docker refuses while a container still uses one; the next sweep tries again). The janitor also
records each volume's size for ``GET /volumes``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any
from uuid import UUID

import docker
from docker.errors import APIError, NotFound
from prometheus_client import Counter

from chronoverse.definitions import (
    LABEL_INSTALLATION,
    LABEL_USER,
    LABEL_VOLUME,
    LABEL_VOLUME_ID,
    volume_name,
)
from chronoverse.postgres import Pool
from chronoverse.sql import Queries

logger = logging.getLogger(__name__)
QUERIES = Queries.load(Path(__file__).with_name("queries.sql"))

VOLUMES_REMOVED = Counter(
    "chronoverse_volumes_removed", "Docker volumes removed because their owner deleted them."
)


class VolumeRows:
    """The execution worker's side of the ``volumes`` table."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    def touch(self, user_id: UUID, name: str, job_id: UUID) -> UUID:
        """Record that ``job_id`` mounts the volume (creating its row); return the row's id."""
        with self._pool.connection() as conn:
            row = conn.execute(
                QUERIES.touch_volume, {"user_id": user_id, "name": name, "job_id": job_id}
            ).fetchone()
        assert row is not None
        return UUID(str(row["id"]))


class Janitor:
    def __init__(self, docker_client: docker.DockerClient, pool: Pool, *, installation: str):
        self._docker = docker_client
        self._pool = pool
        self._installation = installation

    def sweep(self) -> int:
        """Remove this installation's volumes that no row owns; record the others' sizes.
        Returns how many were removed."""
        label = f"{LABEL_INSTALLATION}={self._installation}"
        found: dict[tuple[UUID, str], Any] = {}
        for volume in self._docker.volumes.list(filters={"label": label}):
            volume_labels = volume.attrs.get("Labels") or {}
            try:
                owner = (UUID(volume_labels[LABEL_USER]), str(volume_labels[LABEL_VOLUME]))
            except (KeyError, ValueError):
                continue  # not a job volume
            found[owner] = volume
        if not found:
            return 0
        pairs = list(found)
        with self._pool.connection() as conn:
            rows = conn.execute(
                QUERIES.known_volumes,
                {"user_ids": [p[0] for p in pairs], "names": [p[1] for p in pairs]},
            ).fetchall()
        ids = {(row["user_id"], row["name"]): str(row["id"]) for row in rows}
        known = set(ids)
        removed = 0
        for owner, volume in found.items():
            labelled = (volume.attrs.get("Labels") or {}).get(LABEL_VOLUME_ID)
            if owner in known and labelled == ids[owner]:
                continue
            # No row: its owner deleted it. Another id: left from a deleted row of the same name
            # (a job re-creates the current one when it mounts it).
            try:
                volume.remove()
            except NotFound:
                continue
            except APIError as exc:
                if exc.status_code == 409:  # a container still mounts it: next sweep
                    continue
                raise
            removed += 1
            VOLUMES_REMOVED.inc()
            logger.info(
                "removed volume %s: its owner deleted it",
                volume.name,
                extra={"action": "volume_removed", "user_id": str(owner[0])},
            )
        self._record_sizes(known)
        return removed

    def _record_sizes(self, known: set[tuple[UUID, str]]) -> None:
        if not known:
            return
        sizes: dict[str, int] = {}
        for entry in self._docker.df().get("Volumes") or []:
            size = (entry.get("UsageData") or {}).get("Size")
            if isinstance(size, int) and size >= 0:
                sizes[entry["Name"]] = size
        measured = []
        for user_id, name in known:
            if (size := sizes.get(volume_name(user_id, name))) is not None:
                measured.append((user_id, name, size))
        if measured:
            with self._pool.connection() as conn:
                conn.execute(
                    QUERIES.record_volume_sizes,
                    {
                        "user_ids": [m[0] for m in measured],
                        "names": [m[1] for m in measured],
                        "sizes": [m[2] for m in measured],
                    },
                )
