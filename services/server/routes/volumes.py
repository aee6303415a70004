"""/volumes: a user's named volumes (created by the jobs that mount them)."""

from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.responses import Response

from chronoverse.payloads import VOLUME_NAME_PATTERN
from services.server.http_errors import ERRORS
from services.server.routes.deps import Api, Auth
from services.server.schemas import VolumeListOut

router = APIRouter(prefix="/volumes", tags=["volumes"], responses=ERRORS)

VolumeName = Annotated[str, Path(pattern=VOLUME_NAME_PATTERN, description="The volume's name.")]


@router.get(
    "",
    response_model=VolumeListOut,
    summary="Your named volumes with their sizes (at most CHRONOVERSE_MAX_VOLUMES_PER_USER).",
)
def list_volumes(who: Auth, api: Api) -> VolumeListOut:
    return api.volumes.list(who)


@router.delete(
    "/{name}",
    status_code=204,
    summary="Delete a volume and its data. 409 while a running job mounts it; a later job "
    "that mounts the name starts with an empty volume.",
)
def delete_volume(name: VolumeName, who: Auth, api: Api) -> Response:
    api.volumes.delete(who, name)
    return Response(status_code=204)
