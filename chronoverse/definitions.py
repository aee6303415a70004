"""Container definitions: what the execution worker needs to start a CONTAINER job.

The workflow worker builds a definition when a CONTAINER workflow's build runs, and caches it in
Redis under the workflow and its generation. The execution worker reads it; when it is missing
(evicted, flushed) or cannot be verified, it builds it again from the payload in Postgres.

Redis is not trusted with what a job may do: a cached definition is sealed with the installation's
secret key (Fernet: encrypted, so its env values are not in clear, and authenticated, so a
planted or edited entry is refused), it names the workflow and generation it was built for, and
the execution worker checks it against the operator's policy again on every run. Pure: no I/O.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any
from uuid import UUID

from chronoverse.errors import ChronoverseError
from chronoverse.payloads import ContainerPayload, ContainerPolicy
from chronoverse.secrets import SecretBox, SecretError

LABEL_JOB = "chronoverse.job_id"
LABEL_WORKFLOW = "chronoverse.workflow_id"
LABEL_LEASE = "chronoverse.lease_token"
# The attempt the container runs: a dead attempt's output is kept as that attempt's.
LABEL_ATTEMPT = "chronoverse.attempt"
# Which installation started the container: its reaper never touches another's containers when
# several installations (or test runs) share a Docker engine.
LABEL_INSTALLATION = "chronoverse.installation"
LABEL_USER = "chronoverse.user_id"
LABEL_VOLUME = "chronoverse.volume"
LABEL_VOLUME_ID = "chronoverse.volume_id"
# A container created for a moment, never started (volume set-up, image inspection): the reaper
# removes any that a crash left behind.
LABEL_HELPER = "chronoverse.helper"
DEFINITION_VERSION = 2
VOLUME_PREFIX = "chronoverse-"


class UnverifiedDefinitionError(ChronoverseError):
    """A cached definition that is not one this installation sealed for this workflow."""


@dataclass(frozen=True, kw_only=True)
class VolumeSpec:
    name: str  # the user's name for it
    source: str  # the Docker volume: one per (owner, name)
    target: str
    read_only: bool


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
    user_id: str
    volumes: tuple[VolumeSpec, ...] = field(default_factory=tuple)
    # A working dir the image has keeps its files (read-only); one it lacks is a writable tmpfs.
    working_dir_in_image: bool = False

    def to_json(self) -> str:
        return json.dumps({"v": DEFINITION_VERSION, **asdict(self)}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> ContainerDefinition:
        data: dict[str, Any] = json.loads(text)
        if data.pop("v", None) != DEFINITION_VERSION:
            raise ValueError("unsupported definition version")
        volumes = tuple(VolumeSpec(**v) for v in data.pop("volumes", ()))
        return cls(**data, volumes=volumes)

    def seal(self, box: SecretBox) -> bytes:
        """What Redis stores: encrypted and authenticated with the installation's key."""
        return box.encrypt(self.to_json().encode())

    @classmethod
    def unseal(
        cls, box: SecretBox, sealed: bytes, *, workflow_id: UUID | str, generation: int
    ) -> ContainerDefinition:
        """The definition in ``sealed``, if this installation sealed it for this workflow and
        generation; else UnverifiedDefinitionError."""
        try:
            definition = cls.from_json(box.decrypt(sealed))
        except SecretError as exc:
            raise UnverifiedDefinitionError(
                f"not sealed with this installation's key: {exc}"
            ) from exc
        except (ValueError, TypeError) as exc:
            raise UnverifiedDefinitionError(f"unreadable: {exc}") from exc
        if (definition.workflow_id, definition.generation) != (str(workflow_id), generation):
            raise UnverifiedDefinitionError(
                f"sealed for workflow {definition.workflow_id} generation {definition.generation}"
            )
        return definition

    def refusal(self, policy: ContainerPolicy) -> str | None:
        """Why the operator's policy forbids running this definition, if it does."""
        problems = []
        if self.network not in policy.networks:
            problems.append(
                f"network {self.network!r} is not allowed (allowed: {', '.join(policy.networks)})"
            )
        for what, value, ceiling in (
            ("memory_mb", self.memory_mb, policy.max_memory_mb),
            ("cpus", self.nano_cpus / 1e9, policy.max_cpus),
            ("pids", self.pids_limit, policy.max_pids),
            ("timeout_seconds", self.timeout_s, policy.max_timeout_s),
        ):
            if value > ceiling:
                problems.append(f"{what} {value:g} is above the ceiling of {ceiling:g}")
        if len(self.volumes) > policy.max_volumes:
            problems.append(
                f"{len(self.volumes)} volumes is above the ceiling of {policy.max_volumes}"
            )
        for volume in self.volumes:
            if volume.source != volume_name(self.user_id, volume.name):
                problems.append(f"volume {volume.name!r} is not the owner's")
        if not problems:
            return None
        return "refused by the container policy: " + "; ".join(problems)


def cache_key(workflow_id: UUID | str, generation: int) -> str:
    return f"{cache_prefix(workflow_id)}{generation}"


def cache_prefix(workflow_id: UUID | str) -> str:
    """Every cached generation of a workflow starts with it (deleted with the workflow)."""
    return f"chronoverse:definition:{workflow_id}:"


def volume_name(user_id: UUID | str, name: str) -> str:
    """The Docker volume behind a user's named volume: two users' `cache` are two volumes."""
    return f"{VOLUME_PREFIX}{user_id}-{name}"


def define(
    workflow_id: UUID | str,
    generation: int,
    payload: ContainerPayload,
    image_id: str,
    *,
    user_id: UUID | str,
    policy: ContainerPolicy,
    working_dir_in_image: bool = False,
) -> ContainerDefinition:
    """The definition of a payload that the policy allows (see ContainerPolicy.violations)."""
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
        network=policy.network_of(payload),
        timeout_s=payload.timeout_seconds,
        user_id=str(user_id),
        working_dir_in_image=working_dir_in_image,
        volumes=tuple(
            VolumeSpec(
                name=v.name,
                source=volume_name(user_id, v.name),
                target=v.path,
                read_only=v.read_only,
            )
            for v in payload.volumes
        ),
    )


def labels(
    job_id: UUID | str,
    workflow_id: UUID | str,
    lease_token: int,
    installation: str,
    *,
    attempt: int,
) -> dict[str, str]:
    return {
        LABEL_JOB: str(job_id),
        LABEL_WORKFLOW: str(workflow_id),
        LABEL_LEASE: str(lease_token),
        LABEL_ATTEMPT: str(attempt),
        LABEL_INSTALLATION: installation,
    }


def helper_labels(installation: str) -> dict[str, str]:
    return {LABEL_INSTALLATION: installation, LABEL_HELPER: "1"}
