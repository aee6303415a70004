"""A user's named volumes: list, delete, and the per-user bound on how many they may have.

The server never talks to Docker. A volume's row is written by the execution worker when a job
first mounts it; deleting the row is all ``DELETE /volumes/{name}`` does, and every execution
worker's janitor then removes the Docker volume behind it (services/execution_worker/volumes.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from chronoverse.errors import ConflictError, NotFoundError
from chronoverse.postgres import Conn
from chronoverse.sql import Queries

QUERIES = Queries.load(Path(__file__).with_name("queries.sql"))


@dataclass(frozen=True, kw_only=True)
class Volume:
    name: str
    created_at: datetime
    last_used_at: datetime
    size_bytes: int | None
    size_measured_at: datetime | None
    workflow_ids: tuple[UUID, ...]

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Volume:
        return cls(
            name=row["name"],
            created_at=row["created_at"],
            last_used_at=row["last_used_at"],
            size_bytes=row["size_bytes"],
            size_measured_at=row["size_measured_at"],
            workflow_ids=tuple(row["workflow_ids"]),
        )


def list_volumes(conn: Conn, user_id: UUID) -> list[Volume]:
    rows = conn.execute(QUERIES.list_volumes, {"user_id": user_id}).fetchall()
    return [Volume.from_row(row) for row in rows]


def delete(conn: Conn, user_id: UUID, name: str) -> None:
    """Delete a volume and its data; 409 while a running job mounts it."""
    params = {"user_id": user_id, "name": name}
    if conn.execute(QUERIES.lock_volume, params).fetchone() is None:
        raise NotFoundError("volume", name)
    running = conn.execute(QUERIES.volume_in_use, params).fetchone()
    if running is not None:
        raise ConflictError(
            "volume_in_use",
            f"volume {name!r} is mounted by running job {running['id']}; try again when it ends",
        )
    conn.execute(QUERIES.delete_volume, params)


def check_quota(
    conn: Conn,
    user_id: UUID,
    wanted: set[str],
    *,
    limit: int,
    workflow_id: UUID | None = None,
) -> None:
    """Refuse a payload mounting ``wanted`` that would give its owner more than ``limit`` named
    volumes (``workflow_id``: the workflow whose payload it replaces)."""
    if not wanted:
        return
    conn.execute(QUERIES.lock_user_volumes, {"user_id": user_id})
    rows = conn.execute(
        QUERIES.volume_names_in_use, {"user_id": user_id, "except_workflow_id": workflow_id}
    ).fetchall()
    total = {row["name"] for row in rows} | wanted
    if len(total) > limit:
        # A conflict with what the user has, not an invalid field: the same payload is valid
        # once they delete volumes (and the OpenAPI document cannot know how many they have).
        raise ConflictError(
            "volume_quota_exceeded",
            f"payload.volumes would give you {len(total)} volumes, above the limit of {limit} "
            "per user; delete unused ones (DELETE /volumes/{name})",
        )
