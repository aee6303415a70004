"""Running a CONTAINER job: definition, sandbox, container, live log lines, timeout, cleanup.

Every job container runs in the sandbox the operator set, whatever its payload says (see
docs/security.md): all capabilities dropped, `no-new-privileges`, a read-only root filesystem
with a size-limited tmpfs at `/tmp` (and at the working dir), a non-root user, memory, CPU, pids
and open-file limits, a bounded Docker log driver, and a network the operator allows (never the
host's). The definition it runs comes from the sealed Redis cache or, failing that, from Postgres,
and is checked against the policy again on every run. The container always carries the labels
`chronoverse.job_id`, `chronoverse.workflow_id` and `chronoverse.lease_token`, and is always
removed; the :class:`Reaper` removes the ones a dead worker left behind.
"""

from __future__ import annotations

import io
import logging
import tarfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast
from uuid import UUID

import docker
import redis
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.types import LogConfig, Mount, Ulimit
from prometheus_client import Counter

from chronoverse.containers import image_has_path
from chronoverse.definition_cache import DefinitionCache
from chronoverse.definitions import (
    LABEL_HELPER,
    LABEL_INSTALLATION,
    LABEL_JOB,
    LABEL_LEASE,
    LABEL_USER,
    LABEL_VOLUME,
    LABEL_VOLUME_ID,
    ContainerDefinition,
    UnverifiedDefinitionError,
    VolumeSpec,
    define,
    helper_labels,
    labels,
)
from chronoverse.domain import LogStream, WorkflowKind, utcnow
from chronoverse.errors import InvalidFieldsError
from chronoverse.logs import LineSplitter
from chronoverse.payloads import ContainerPayload, ContainerPolicy, parse_payload
from chronoverse.scheduling import RunResult
from chronoverse.secrets import SecretBox, SecretError, open_payload
from services.execution_worker.logship import LogShipper

logger = logging.getLogger(__name__)

DEFINITIONS_REBUILT = Counter(
    "chronoverse_definitions_rebuilt",
    "Container definitions missing from Redis and rebuilt from Postgres.",
)
CONTAINERS_REAPED = Counter(
    "chronoverse_containers_reaped", "Labelled containers removed because no live lease owned them."
)

ShipperFactory = Callable[[UUID], LogShipper]
RecordContainer = Callable[[str], bool]
TouchVolume = Callable[[UUID, str, UUID], UUID]  # (owner, name, job) -> the volume's id
# A bounded log driver: we stream the output ourselves, Docker's copy is only a fallback.
DOCKER_LOG = LogConfig(type=LogConfig.types.JSON, config={"max-size": "1m", "max-file": "1"})
# Sticky and writable by all, like /tmp: a new volume's root belongs to root, the job does not.
VOLUME_ROOT_MODE = 0o1777
HELPER_MAX_AGE_S = 300.0


@dataclass(frozen=True, kw_only=True)
class Sandbox:
    """What every job container gets, whatever its payload says (ContainerSettings)."""

    user: str | None  # "uid:gid"; None keeps the image's own user
    tmpfs_mb: int
    nofile: int

    def host_config(self, definition: ContainerDefinition) -> dict[str, Any]:
        """The keyword arguments of ``containers.create`` that confine the job."""
        tmpfs = f"rw,nosuid,nodev,size={self.tmpfs_mb}m,mode=1777"
        if self.user is not None:
            # Docker gives a tmpfs the mode of the directory it covers (root's 0755 for a working
            # dir it creates, or for /tmp in an image that lacks one): own it, so it is writable.
            uid, _, gid = self.user.partition(":")
            tmpfs += f",uid={uid},gid={gid or uid}"
        mounted = {v.target for v in definition.volumes}
        tmpfs_paths = {"/tmp": tmpfs}
        if (
            definition.working_dir
            and definition.working_dir not in mounted
            and not definition.working_dir_in_image
        ):
            tmpfs_paths[definition.working_dir] = tmpfs
        memory = f"{definition.memory_mb}m"
        return {
            "user": self.user,
            "privileged": False,
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges"],
            "read_only": True,
            "tmpfs": tmpfs_paths,
            "mem_limit": memory,
            "memswap_limit": memory,  # no swap beyond the memory limit
            "nano_cpus": definition.nano_cpus,
            "pids_limit": definition.pids_limit,
            "ulimits": [Ulimit(name="nofile", soft=self.nofile, hard=self.nofile)],
            "log_config": DOCKER_LOG,
            "network_mode": definition.network,
            "mounts": [
                Mount(target=v.target, source=v.source, type="volume", read_only=v.read_only)
                for v in definition.volumes
            ],
        }


class ContainerRunner:
    def __init__(
        self,
        *,
        docker_client: docker.DockerClient,
        definitions: DefinitionCache,
        secrets: SecretBox,
        policy: ContainerPolicy,
        sandbox: Sandbox,
        shippers: ShipperFactory,
        touch_volume: TouchVolume,
        stop_grace_s: int,
        max_log_chars: int,
        installation: str,
    ) -> None:
        self._docker = docker_client
        self._definitions = definitions
        self._secrets = secrets
        self._policy = policy
        self._sandbox = sandbox
        self._shippers = shippers
        self._touch_volume = touch_volume
        self._stop_grace_s = stop_grace_s
        self._max_log_chars = max_log_chars
        self._installation = installation

    def run(
        self,
        *,
        job_id: UUID,
        workflow_id: UUID,
        user_id: UUID,
        generation: int,
        payload: dict[str, Any],
        lease_token: int,
        record_container: RecordContainer,
    ) -> RunResult:
        splitter = LineSplitter()
        shipper = self._shippers(job_id)
        try:
            return self._run(
                job_id,
                workflow_id,
                user_id,
                generation,
                payload,
                lease_token,
                record_container,
                splitter,
                shipper,
            )
        finally:
            # Every CONTAINER job ends its log stream, even one that never started.
            shipper.add(splitter.flush(utcnow()))
            shipper.close(splitter.last_seq)

    def _run(
        self,
        job_id: UUID,
        workflow_id: UUID,
        user_id: UUID,
        generation: int,
        payload: dict[str, Any],
        lease_token: int,
        record_container: RecordContainer,
        splitter: LineSplitter,
        shipper: LogShipper,
    ) -> RunResult:
        try:
            definition = self._definition(workflow_id, user_id, generation, payload)
        except ImageNotFound as exc:
            return RunResult.user_failure(
                f"image {payload.get('image')} not found locally: {exc.explanation}"
            )
        except InvalidFieldsError as exc:
            return RunResult.user_failure(f"refused by the container policy: {exc}")
        except SecretError as exc:
            return RunResult.user_failure(f"cannot read the payload's secrets: {exc}")
        # Checked on every run: the policy may have tightened since the definition was built.
        if (refusal := definition.refusal(self._policy)) is not None:
            return RunResult.user_failure(refusal)
        try:
            for volume in definition.volumes:
                self._ensure_volume(volume, definition, job_id)
            container = self._docker.containers.create(
                image=definition.image_id,
                entrypoint=definition.entrypoint,
                command=definition.command or None,
                environment=definition.env,
                working_dir=definition.working_dir,
                labels=labels(job_id, workflow_id, lease_token, self._installation),
                detach=True,
                **self._sandbox.host_config(definition),
            )
        except ImageNotFound as exc:
            return RunResult.user_failure(f"image {definition.image} not found: {exc.explanation}")
        except APIError as exc:
            if exc.is_client_error():
                return RunResult.user_failure(f"container rejected: {exc.explanation}")
            return RunResult.system_failure(f"docker: {exc.explanation}")
        except DockerException as exc:
            return RunResult.system_failure(f"docker unavailable: {exc}")
        try:
            if not record_container(str(container.id)):
                return RunResult.system_failure("lease lost before the container started")
            return self._watch(container, definition, splitter, shipper)
        except DockerException as exc:
            return RunResult.system_failure(f"docker: {exc}")
        finally:
            try:
                container.remove(force=True)
            except NotFound:
                pass
            except DockerException as exc:
                logger.warning(
                    "could not remove container %s: %s; the reaper will",
                    container.id,
                    exc,
                    extra={"action": "container_remove_failed", "job_id": str(job_id)},
                )

    def _watch(
        self,
        container: Any,
        definition: ContainerDefinition,
        splitter: LineSplitter,
        shipper: LogShipper,
    ) -> RunResult:
        # Attach before start, so not a byte of output is missed.
        stream = cast(
            Iterator[tuple[bytes | None, bytes | None]],
            self._docker.api.attach(
                container.id, stdout=True, stderr=True, stream=True, logs=True, demux=True
            ),
        )
        timed_out = threading.Event()

        def stop_on_timeout() -> None:
            timed_out.set()
            try:
                container.stop(timeout=self._stop_grace_s)  # SIGTERM, then SIGKILL after grace
            except DockerException:
                pass

        timer = threading.Timer(definition.timeout_s, stop_on_timeout)
        timer.daemon = True
        container.start()
        timer.start()
        shipped = 0
        truncated = 0
        try:
            for out, err in stream:
                now = utcnow()
                for name, chunk in ((LogStream.STDOUT, out), (LogStream.STDERR, err)):
                    if not chunk:
                        continue
                    if shipped >= self._max_log_chars:
                        truncated += len(chunk)
                        continue
                    lines = splitter.feed(name, chunk, now)
                    shipped += sum(len(line.line) for line in lines)
                    shipper.add(lines)
            status = container.wait()
        finally:
            timer.cancel()
        if truncated:
            note = f"[chronoverse] output truncated: {truncated} more bytes were not kept\n"
            shipper.add(splitter.flush(utcnow()))
            shipper.add(splitter.feed(LogStream.STDERR, note.encode(), utcnow()))
        exit_code = int(status.get("StatusCode", -1))
        if timed_out.is_set():
            return RunResult.user_failure(f"timed out after {definition.timeout_s}s", exit_code)
        if exit_code != 0:
            return RunResult.user_failure(f"exited with code {exit_code}", exit_code)
        return RunResult.success(exit_code=0)

    def _definition(
        self, workflow_id: UUID, user_id: UUID, generation: int, payload: dict[str, Any]
    ) -> ContainerDefinition:
        """The cached definition; rebuilt from the payload in Postgres when Redis lost it or
        holds one that does not verify."""
        try:
            cached = self._definitions.get(workflow_id, generation)
            if cached is not None:
                return cached
        except UnverifiedDefinitionError:
            pass  # logged and counted by the cache; Postgres is the source of truth
        except redis.RedisError as exc:
            logger.warning(
                "definition cache unavailable (%s); rebuilding",
                exc,
                extra={"action": "definition_unusable", "workflow_id": str(workflow_id)},
            )
        parsed = parse_payload(
            WorkflowKind.CONTAINER,
            open_payload(self._secrets, WorkflowKind.CONTAINER, payload),
            self._policy,
        )
        assert isinstance(parsed, ContainerPayload)
        image_id = str(self._docker.images.get(parsed.image).id)
        definition = define(
            workflow_id,
            generation,
            parsed,
            image_id,
            user_id=user_id,
            policy=self._policy,
            working_dir_in_image=bool(parsed.working_dir)
            and image_has_path(
                self._docker,
                image_id,
                str(parsed.working_dir),
                labels=helper_labels(self._installation),
            ),
        )
        DEFINITIONS_REBUILT.inc()
        try:
            self._definitions.put(definition)
        except redis.RedisError:
            pass  # the next job rebuilds it again
        logger.info(
            "rebuilt the definition of workflow %s generation %d",
            workflow_id,
            generation,
            extra={"action": "definition_rebuilt", "workflow_id": str(workflow_id)},
        )
        return definition

    def _ensure_volume(
        self, volume: VolumeSpec, definition: ContainerDefinition, job_id: UUID
    ) -> None:
        """The owner's named volume, created on first use with a root the job may write to.

        The row's id labels the Docker volume: a volume left from a row its owner deleted (the
        janitor has not removed it yet) is removed here, so its data is never mounted again.
        """
        volume_id = str(self._touch_volume(UUID(definition.user_id), volume.name, job_id))
        try:
            existing = self._docker.volumes.get(volume.source)
        except NotFound:
            existing = None
        if existing is not None:
            if (existing.attrs.get("Labels") or {}).get(LABEL_VOLUME_ID) == volume_id:
                return
            existing.remove(force=True)  # a deleted volume's leftovers (or not one of ours)
        self._docker.volumes.create(
            name=volume.source,
            labels={
                LABEL_INSTALLATION: self._installation,
                LABEL_USER: definition.user_id,
                LABEL_VOLUME: volume.name,
                LABEL_VOLUME_ID: volume_id,
            },
        )
        # A new volume's root is root's and 0755, and the job runs as nobody. Docker can change
        # it without running anything: a container that is created, never started, mounts the
        # volume, and the archive API sets the mode of its mount point.
        helper = self._docker.containers.create(
            image=definition.image_id,
            entrypoint=["/nonexistent"],
            network_mode="none",
            labels=helper_labels(self._installation),
            mounts=[Mount(target="/volume", source=volume.source, type="volume")],
        )
        try:
            helper.put_archive("/", _directory_tar("volume", VOLUME_ROOT_MODE))
        finally:
            helper.remove(force=True)


def _older_than(container: Any, seconds: float) -> bool:
    created = str(container.attrs.get("Created", ""))
    try:
        # Docker gives nanoseconds: "2026-11-29T17:49:43.123456789Z".
        when = datetime.fromisoformat(created[:26].rstrip("Z") + "+00:00")
    except ValueError:
        return False
    return (utcnow() - when).total_seconds() > seconds


def _directory_tar(name: str, mode: int) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        entry = tarfile.TarInfo(name)
        entry.type = tarfile.DIRTYPE
        entry.mode = mode
        tar.addfile(entry)
    return buffer.getvalue()


class Reaper:
    """Removes labelled containers that no live lease owns (e.g. after a worker crashed)."""

    def __init__(
        self,
        docker_client: docker.DockerClient,
        owned: Callable[[list[tuple[UUID, int]]], set[UUID]],
        mine: Callable[[], set[UUID]],
        *,
        installation: str,
    ) -> None:
        self._docker = docker_client
        self._owned = owned
        self._mine = mine
        self._installation = installation

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
                container.remove(force=True)
            except NotFound:
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
