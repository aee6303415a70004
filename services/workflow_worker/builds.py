"""Build events from the `workflows` topic.

A CONTAINER build goes QUEUED → STARTED → COMPLETED or FAILED for the event's generation: the
image is made present per the pull policy and resolved to its ID, it must have something to run
(the payload's `command` or the image's ENTRYPOINT or CMD), and the container definition is
cached in Redis. A HEARTBEAT needs nothing built: its event takes the build straight to COMPLETED
through the same path. Terminate and delete events stop the workflow's running containers.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from uuid import UUID

import docker
from docker.errors import NotFound
from prometheus_client import Counter

from chronoverse import lifecycle
from chronoverse.containers import image_has_path
from chronoverse.definition_cache import DefinitionCache
from chronoverse.definitions import LABEL_WORKFLOW, define, helper_labels
from chronoverse.domain import BuildStatus, WorkflowKind
from chronoverse.errors import InvalidFieldsError
from chronoverse.events import WorkflowEvent
from chronoverse.kafka.consumer import Record
from chronoverse.payloads import ContainerPayload, ContainerPolicy, parse_payload
from chronoverse.postgres import Pool
from chronoverse.secrets import SecretBox, SecretError, open_payload
from chronoverse.sql import Queries
from services.workflow_worker.images import Images, ImageUnavailableError, missing_command

logger = logging.getLogger(__name__)
QUERIES = Queries.load(Path(__file__).with_name("queries.sql"))

BUILDS = Counter("chronoverse_builds", "Build outcomes by kind.", ["kind", "status"])


class Builder:
    def __init__(
        self,
        pool: Pool,
        images: Images,
        docker_client: docker.DockerClient,
        definitions: DefinitionCache,
        *,
        secrets: SecretBox,
        policy: ContainerPolicy,
        installation: str,
        stop_grace_s: int = 10,
    ) -> None:
        self._installation = installation
        self._pool = pool
        self._images = images
        self._docker = docker_client
        self._definitions = definitions
        self._secrets = secrets
        self._policy = policy
        self._stop_grace_s = stop_grace_s

    def handle(self, batch: Sequence[Record[WorkflowEvent]]) -> None:
        for record in batch:
            self.apply(record.value)

    def apply(self, event: WorkflowEvent) -> None:
        if event.type.needs_build:
            self._build(event)
        elif event.kind is WorkflowKind.CONTAINER:
            self._stop_containers(event.workflow_id)
            # Terminated is final and deleted is gone: no job will read its definitions again.
            self._definitions.forget(event.workflow_id)

    def _build(self, event: WorkflowEvent) -> None:
        if event.kind is WorkflowKind.HEARTBEAT:
            self._finish(event, BuildStatus.COMPLETED, None)
            return
        with self._pool.connection() as conn:
            row = conn.execute(
                QUERIES.start_build,
                {"workflow_id": event.workflow_id, "generation": event.generation},
            ).fetchone()
        if row is None:
            logger.debug(
                "stale build event for %s generation %d",
                event.workflow_id,
                event.generation,
                extra={"action": "build_stale"},
            )
            return
        try:
            payload = parse_payload(
                WorkflowKind.CONTAINER,
                open_payload(self._secrets, WorkflowKind.CONTAINER, row["payload"]),
                self._policy,
            )
        except InvalidFieldsError as exc:
            # Stored before the operator's policy changed (or before a validation existed).
            self._finish(event, BuildStatus.FAILED, f"the payload is not allowed: {exc}")
            return
        except SecretError as exc:
            self._finish(event, BuildStatus.FAILED, f"cannot read the payload's secrets: {exc}")
            return
        assert isinstance(payload, ContainerPayload)
        try:
            image_id = self._images.ensure(payload.image, payload.pull_policy)
            nothing_to_run = missing_command(payload, self._images.argv(image_id))
        except ImageUnavailableError as exc:
            self._finish(event, BuildStatus.FAILED, exc.message)
            return
        if nothing_to_run is not None:
            # Docker would refuse every job of this generation with the same words.
            self._finish(event, BuildStatus.FAILED, nothing_to_run)
            return
        definition = define(
            event.workflow_id,
            event.generation,
            payload,
            image_id,
            user_id=row["user_id"],
            policy=self._policy,
            working_dir_in_image=bool(payload.working_dir)
            and image_has_path(
                self._docker,
                image_id,
                str(payload.working_dir),
                labels=helper_labels(self._installation),
            ),
        )
        self._definitions.put(definition)
        self._definitions.forget(event.workflow_id, below_generation=event.generation)
        self._finish(event, BuildStatus.COMPLETED, None)

    def _finish(self, event: WorkflowEvent, status: BuildStatus, error: str | None) -> None:
        query = (
            QUERIES.complete_build if event.kind is WorkflowKind.HEARTBEAT else QUERIES.finish_build
        )
        with self._pool.connection() as conn:
            row = conn.execute(
                query,
                {
                    "workflow_id": event.workflow_id,
                    "generation": event.generation,
                    "status": status.value,
                    "error": error,
                },
            ).fetchone()
            if row is not None and status is BuildStatus.COMPLETED:
                lifecycle.wake_scheduler(conn)
        if row is None:
            return
        BUILDS.labels(event.kind.value, status.value).inc()
        log = logger.info if status is BuildStatus.COMPLETED else logger.warning
        log(
            "workflow %s generation %d build %s%s",
            event.workflow_id,
            event.generation,
            status.value,
            f": {error}" if error else "",
            extra={
                "action": "build_finished",
                "workflow_id": str(event.workflow_id),
                "status": status.value,
            },
        )

    def _stop_containers(self, workflow_id: UUID) -> None:
        """Stop (SIGTERM, then SIGKILL after the grace period) and remove its running containers."""
        running = self._docker.containers.list(
            all=True, filters={"label": f"{LABEL_WORKFLOW}={workflow_id}"}
        )
        for container in running:
            try:
                container.stop(timeout=self._stop_grace_s)
                container.remove(force=True)
            except NotFound:
                continue  # its job finished and removed it meanwhile
            logger.info(
                "stopped container %s of terminated workflow %s",
                container.short_id,
                workflow_id,
                extra={"action": "container_stopped", "workflow_id": str(workflow_id)},
            )
