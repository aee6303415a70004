"""Container definitions: what the execution worker needs to start a CONTAINER job.

The workflow worker builds a definition when a CONTAINER workflow's build runs, and caches it in
Redis under the workflow and its generation. The execution worker reads it; when it is missing
(evicted, flushed), it builds it again from the payload in Postgres. Pure: no I/O here.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any
from uuid import UUID

from chronoverse.payloads import ContainerPayload

LABEL_JOB = "chronoverse.job_id"
LABEL_WORKFLOW = "chronoverse.workflow_id"
LABEL_LEASE = "chronoverse.lease_token"
# Which installation started the container: its reaper never touches another's containers when
# several installations (or test runs) share a Docker engine.
LABEL_INSTALLATION = "chronoverse.installation"
DEFINITION_VERSION = 1


@dataclass(frozen=True, kw_only=True)
class ContainerDefinition:
    workflow_id: str
    generation: int
    image: str  # as the user wrote it
    image_id: str  # what it resolved to when built (sha256:…)
    entrypoint: list[str] | None  # the payload's `command`; None keeps the image's
    command: list[str]  # the payload's `args`
    env: dict[str, str]
    working_dir: str | None
    memory_mb: int
    nano_cpus: int
    pids_limit: int
    network: str
    timeout_s: int

    def to_json(self) -> str:
        return json.dumps({"v": DEFINITION_VERSION, **asdict(self)}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> ContainerDefinition:
        data: dict[str, Any] = json.loads(text)
        if data.pop("v", None) != DEFINITION_VERSION:
            raise ValueError("unsupported definition version")
        return cls(**data)


def cache_key(workflow_id: UUID | str, generation: int) -> str:
    return f"chronoverse:definition:{workflow_id}:{generation}"


def define(
    workflow_id: UUID | str, generation: int, payload: ContainerPayload, image_id: str
) -> ContainerDefinition:
    return ContainerDefinition(
        workflow_id=str(workflow_id),
        generation=generation,
        image=payload.image,
        image_id=image_id,
        entrypoint=list(payload.command) if payload.command is not None else None,
        command=list(payload.args),
        env=dict(payload.env),
        working_dir=payload.working_dir,
        memory_mb=payload.resources.memory_mb,
        nano_cpus=int(payload.resources.cpus * 1_000_000_000),
        pids_limit=payload.resources.pids,
        network=payload.network,
        timeout_s=payload.timeout_seconds,
    )


def labels(
    job_id: UUID | str, workflow_id: UUID | str, lease_token: int, installation: str
) -> dict[str, str]:
    return {
        LABEL_JOB: str(job_id),
        LABEL_WORKFLOW: str(workflow_id),
        LABEL_LEASE: str(lease_token),
        LABEL_INSTALLATION: installation,
    }
