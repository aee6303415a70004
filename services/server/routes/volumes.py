"""/volumes: a user's named volumes (created by the jobs that mount them)."""

from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.responses import Response

from chronoverse.definitions import volume_name
from chronoverse.payloads import VOLUME_NAME_PATTERN
from services.server.http_errors import ERRORS
from services.server.routes.deps import Auth, Context
from services.server.schemas import VolumeListOut, VolumeOut
from services.server.store import volumes

router = APIRouter(prefix="/volumes", tags=["volumes"], responses=ERRORS)

VolumeName = Annotated[str, Path(pattern=VOLUME_NAME_PATTERN, description="The volume's name.")]


@router.get(
    "",
    response_model=VolumeListOut,
    summary="Your named volumes with their sizes (at most CHRONOVERSE_MAX_VOLUMES_PER_USER).",
)
def list_volumes(who: Auth, context: Context) -> VolumeListOut:
    with context.transaction() as conn:
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


@router.delete(
    "/{name}",
    status_code=204,
    summary="Delete a volume and its data. 409 while a running job mounts it; a later job "
    "that mounts the name starts with an empty volume.",
)
def delete_volume(name: VolumeName, who: Auth, context: Context) -> Response:
    with context.transaction() as conn:
        volumes.delete(conn, who.user_id, name)
    return Response(status_code=204)
