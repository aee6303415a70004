"""Running a CONTAINER job: definition, volumes, container, live log lines, timeout, cleanup.

Every job container runs in the operator's :class:`~services.execution_worker.sandbox.Sandbox`,
whatever its payload says. The definition it runs comes from the sealed Redis cache or, failing
that, from Postgres, and is checked against the policy again on every run. The container always
carries the labels `chronoverse.job_id`, `chronoverse.workflow_id` and `chronoverse.lease_token`,
and is always removed; the :class:`~services.execution_worker.reaper.Reaper` removes the ones a
dead worker left behind. What its exit or a Docker error means for the job is decided in
:mod:`services.execution_worker.results`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any, cast
from uuid import UUID

import docker
import redis
from docker.errors import DockerException, ImageNotFound, NotFound

from chronoverse.containers import image_has_path
from chronoverse.definition_cache import DefinitionCache
from chronoverse.definitions import (
    ContainerDefinition,
    UnverifiedDefinitionError,
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
from services.execution_worker import results
from services.execution_worker.logship import LogShipper
from services.execution_worker.metrics import DEFINITIONS_REBUILT
from services.execution_worker.sandbox import Sandbox
from services.execution_worker.volumes import ensure_volume

logger = logging.getLogger(__name__)

ShipperFactory = Callable[[UUID, int], LogShipper]  # (job, attempt)
RecordContainer = Callable[[str], bool]
TouchVolume = Callable[[UUID, str, UUID], UUID]  # (owner, name, job) -> the volume's id


class ContainerRunner:
    """Runs CONTAINER jobs on one Docker daemon and streams their output to `job_logs`."""

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
        attempt: int,
    ) -> RunResult:
        splitter = LineSplitter()
        shipper = self._shippers(job_id, attempt)
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
        except (ImageNotFound, InvalidFieldsError, SecretError) as exc:
            return results.definition_error(exc, image=payload.get("image"))
        # Checked on every run: the policy may have tightened since the definition was built.
        if (refusal := definition.refusal(self._policy)) is not None:
            return RunResult.user_failure(refusal)
        try:
            for volume in definition.volumes:
                volume_id = self._touch_volume(UUID(definition.user_id), volume.name, job_id)
                ensure_volume(
                    self._docker,
                    volume,
                    definition,
                    volume_id=str(volume_id),
                    installation=self._installation,
                )
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
        except DockerException as exc:
            return results.create_error(exc, image=definition.image)
        try:
            if not record_container(str(container.id)):
                return results.lease_lost_before_start()
            return self._watch(container, definition, splitter, shipper)
        except DockerException as exc:
            return results.run_error(exc)
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
        return results.container_exit(
            status, timed_out=timed_out.is_set(), timeout_s=definition.timeout_s
        )

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
