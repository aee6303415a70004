"""Volume use cases: list a user's named volumes, delete one."""

from __future__ import annotations

import re

from chronoverse.accounts import Principal
from chronoverse.definitions import volume_name
from chronoverse.errors import FieldError, InvalidFieldsError
from chronoverse.payloads import VOLUME_NAME_PATTERN
from services.server.context import ServerContext
from services.server.schemas import VolumeListOut, VolumeOut
from services.server.store import volumes


class VolumeCases:
    def __init__(self, context: ServerContext) -> None:
        self._context = context

    def list(self, who: Principal) -> VolumeListOut:
        with self._context.transaction() as conn:
            found = volumes.list_volumes(conn, who.user_id)
        return VolumeListOut(
            volumes=[
                VolumeOut(
                    name=v.name,
                    docker_name=volume_name(who.user_id, v.name),
                    size_bytes=v.size_bytes,
                    size_measured_at=v.size_measured_at,
                    created_at=v.created_at,
                    last_used_at=v.last_used_at,
                    workflow_ids=list(v.workflow_ids),
                )
                for v in found
            ]
        )

    def delete(self, who: Principal, name: str) -> None:
        """Delete a volume and its data; 409 while a running job mounts it."""
        if not re.fullmatch(VOLUME_NAME_PATTERN, name):
            raise InvalidFieldsError([FieldError("name", "is not a volume name")])
        with self._context.transaction() as conn:
            volumes.delete(conn, who.user_id, name)
