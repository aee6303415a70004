"""Running a CONTAINER job: definition, container, live log lines, timeout, exit code, cleanup.

Security defaults for every job container: not privileged, `no-new-privileges`, memory, CPU and
pids limits from the payload, the payload's network (default `none`). The container always
carries the labels `chronoverse.job_id`, `chronoverse.workflow_id` and `chronoverse.lease_token`,
and is always removed; the :class:`Reaper` removes the ones a dead worker left behind.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any, cast
from uuid import UUID

import docker
import redis
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from prometheus_client import Counter
from pydantic import ValidationError

from chronoverse.definitions import (
    LABEL_INSTALLATION,
    LABEL_JOB,
    LABEL_LEASE,
    ContainerDefinition,
    cache_key,
    define,
    labels,
)
from chronoverse.domain import LogStream, utcnow
from chronoverse.logs import LineSplitter
from chronoverse.payloads import ContainerPayload
from chronoverse.scheduling import RunResult
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


class ContainerRunner:
    def __init__(
        self,
        *,
        docker_client: docker.DockerClient,
        redis_client: redis.Redis,
        shippers: ShipperFactory,
        stop_grace_s: int,
        max_log_chars: int,
        installation: str,
    ) -> None:
        self._docker = docker_client
        self._redis = redis_client
        self._shippers = shippers
        self._stop_grace_s = stop_grace_s
        self._max_log_chars = max_log_chars
        self._installation = installation

    def run(
        self,
        *,
        job_id: UUID,
        workflow_id: UUID,
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
        generation: int,
        payload: dict[str, Any],
        lease_token: int,
        record_container: RecordContainer,
        splitter: LineSplitter,
        shipper: LogShipper,
    ) -> RunResult:
        try:
            definition = self._definition(workflow_id, generation, payload)
        except ImageNotFound as exc:
            return RunResult.user_failure(
                f"image {payload.get('image')} not found locally: {exc.explanation}"
            )
        except ValidationError as exc:
            return RunResult.user_failure(f"stored payload is invalid: {exc}")
        try:
            container = self._docker.containers.create(
                image=definition.image_id,
                entrypoint=definition.entrypoint,
                command=definition.command or None,
                environment=definition.env,
                working_dir=definition.working_dir,
                labels=labels(job_id, workflow_id, lease_token, self._installation),
                mem_limit=f"{definition.memory_mb}m",
                nano_cpus=definition.nano_cpus,
                pids_limit=definition.pids_limit,
                network_mode=definition.network,
                privileged=False,
                security_opt=["no-new-privileges"],
                detach=True,
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
        self, workflow_id: UUID, generation: int, payload: dict[str, Any]
    ) -> ContainerDefinition:
        """The cached definition; rebuilt from the payload when Redis lost it."""
        key = cache_key(workflow_id, generation)
        try:
            cached = self._redis.get(key)
            if cached is not None:
                return ContainerDefinition.from_json(cast(bytes, cached))
        except (redis.RedisError, ValueError, TypeError) as exc:
            logger.warning(
                "cached definition unusable (%s); rebuilding",
                exc,
                extra={"action": "definition_unusable", "workflow_id": str(workflow_id)},
            )
        parsed = ContainerPayload.model_validate(payload)
        image_id = str(self._docker.images.get(parsed.image).id)
        definition = define(workflow_id, generation, parsed, image_id)
        DEFINITIONS_REBUILT.inc()
        try:
            self._redis.set(key, definition.to_json())
        except redis.RedisError:
            pass  # the next job rebuilds it again
        logger.info(
            "rebuilt the definition of workflow %s generation %d",
            workflow_id,
            generation,
            extra={"action": "definition_rebuilt", "workflow_id": str(workflow_id)},
        )
        return definition


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
