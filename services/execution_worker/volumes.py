"""Named volumes of CONTAINER jobs: their Docker volumes, created on first use, removed and sized.

A job's first use of a volume writes its row (:meth:`JobStore.touch_volume`) and creates the
Docker volume (:func:`ensure_volume`). The server never touches Docker: ``DELETE
/volumes/{name}`` only deletes the row, and the :class:`Janitor` of every execution worker then
removes Docker volumes of its installation that no row owns (Docker refuses while a container
still uses one; the next sweep tries again). The janitor also records each volume's size for
``GET /volumes``.
"""

from __future__ import annotations

import io
import logging
import tarfile
from typing import Any
from uuid import UUID

import docker
from docker.errors import APIError, NotFound
from docker.types import Mount

from chronoverse.definitions import (
    LABEL_INSTALLATION,
    LABEL_USER,
    LABEL_VOLUME,
    LABEL_VOLUME_ID,
    ContainerDefinition,
    VolumeSpec,
    helper_labels,
    volume_name,
)
from services.execution_worker.metrics import VOLUMES_REMOVED
from services.execution_worker.store import JobStore

logger = logging.getLogger(__name__)

# Sticky and writable by all, like /tmp: a new volume's root belongs to root, the job does not.
VOLUME_ROOT_MODE = 0o1777


def ensure_volume(
    docker_client: docker.DockerClient,
    volume: VolumeSpec,
    definition: ContainerDefinition,
    *,
    volume_id: str,
    installation: str,
) -> None:
    """The owner's named volume, created on first use with a root the job may write to.

    The row's id labels the Docker volume: a volume left from a row its owner deleted (the
    janitor has not removed it yet) is removed here, so its data is never mounted again.
    """
    try:
        existing = docker_client.volumes.get(volume.source)
    except NotFound:
        existing = None
    if existing is not None:
        if (existing.attrs.get("Labels") or {}).get(LABEL_VOLUME_ID) == volume_id:
            return
        existing.remove(force=True)  # a deleted volume's leftovers (or not one of ours)
    docker_client.volumes.create(
        name=volume.source,
        labels={
            LABEL_INSTALLATION: installation,
            LABEL_USER: definition.user_id,
            LABEL_VOLUME: volume.name,
            LABEL_VOLUME_ID: volume_id,
        },
    )
    # A new volume's root is root's and 0755, and the job runs as nobody. Docker can change
    # it without running anything: a container that is created, never started, mounts the
    # volume, and the archive API sets the mode of its mount point.
    helper = docker_client.containers.create(
        image=definition.image_id,
        entrypoint=["/nonexistent"],
        network_mode="none",
        labels=helper_labels(installation),
        mounts=[Mount(target="/volume", source=volume.source, type="volume")],
    )
    try:
        helper.put_archive("/", _directory_tar("volume", VOLUME_ROOT_MODE))
    finally:
        helper.remove(force=True)


def _directory_tar(name: str, mode: int) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        entry = tarfile.TarInfo(name)
        entry.type = tarfile.DIRTYPE
        entry.mode = mode
        tar.addfile(entry)
    return buffer.getvalue()


class Janitor:
    """Removes Docker volumes whose row is gone, and records the others' sizes."""

    def __init__(self, docker_client: docker.DockerClient, store: JobStore, *, installation: str):
        self._docker = docker_client
        self._store = store
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
        ids = self._store.volume_ids(list(found))
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
            self._store.record_volume_sizes(measured)
