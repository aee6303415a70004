"""Build events from the `workflows` topic.

A CONTAINER build goes QUEUED → STARTED → COMPLETED or FAILED for the event's generation: the
image is made present per the pull policy and resolved to its ID, it must have something to run
(the payload's `command` or the image's ENTRYPOINT or CMD), and the container definition is
cached in Redis. A HEARTBEAT needs nothing built: its event takes the build straight to COMPLETED
through the same path. Terminate and delete events stop the workflow's running containers.

A problem of one workflow never stops the worker: a stored payload that no longer validates or
decrypts, and every error of Docker (a refused reference, a pull that fails, a pull lock that is
never released, the engine unreachable or failing) make the build FAILED with a `build_error` that
says what happened and what to do (:mod:`.failures`). An unreachable or failing engine is first
retried with backoff for up to ``docker_retry_s``, counted from when it began failing for every
build at once, so a Docker restart fails no build and a long outage does not hold each build that
long. Postgres and Redis errors still raise: they are not the workflow's, and the event is
redelivered once they are back.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

import docker
import requests
from docker.errors import DockerException, NotFound
from prometheus_client import Counter

from chronoverse import alerts, lifecycle
from chronoverse.containers import image_has_path
from chronoverse.definition_cache import DefinitionCache
from chronoverse.definitions import LABEL_WORKFLOW, ContainerDefinition, define, helper_labels
from chronoverse.domain import BuildStatus, WorkflowKind, utcnow
from chronoverse.errors import InvalidFieldsError
from chronoverse.events import WorkflowEvent
from chronoverse.kafka.consumer import Record
from chronoverse.payloads import ContainerPayload, ContainerPolicy, parse_payload
from chronoverse.postgres import Conn, Pool
from chronoverse.secrets import SecretBox, SecretError, open_payload
from chronoverse.settings import DEFAULT_PUBLIC_URL
from chronoverse.sql import Queries
from services.workflow_worker.failures import (
    BuildFailedError,
    DockerGaveUpError,
    build_error,
    docker_fault,
    retry_wait,
)
from services.workflow_worker.images import Images, missing_command

logger = logging.getLogger(__name__)
QUERIES = Queries.load(Path(__file__).with_name("queries.sql"))
T = TypeVar("T")

BUILDS = Counter("chronoverse_builds", "Build outcomes by kind.", ["kind", "status"])
DOCKER_RETRIES = Counter(
    "chronoverse_build_docker_retries",
    "Docker calls of builds and container stops retried because the engine was unreachable or "
    "failing.",
)


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
        docker_retry_s: float = 30.0,
        public_url: str = DEFAULT_PUBLIC_URL,
    ) -> None:
        self._installation = installation
        self._public_url = public_url  # makes the links of webhook payloads absolute
        self._pool = pool
        self._images = images
        self._docker = docker_client
        self._definitions = definitions
        self._secrets = secrets
        self._policy = policy
        self._stop_grace_s = stop_grace_s
        self._docker_retry_s = docker_retry_s
        self._outage = _Outage(forget_after_s=docker_retry_s)

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
            if row is not None:
                self._alert(conn, row, event, BuildStatus.STARTED, None)
        if row is None:
            logger.debug(
                "stale build event for %s generation %d",
                event.workflow_id,
                event.generation,
                extra={"action": "build_stale"},
            )
            return
        try:
            payload = self._read(event, row["payload"])
            definition = self._define(event, payload, row["user_id"])
        except BuildFailedError as exc:
            self._finish(event, BuildStatus.FAILED, exc.message)
            return
        self._definitions.put(definition)
        self._definitions.forget(event.workflow_id, below_generation=event.generation)
        self._finish(event, BuildStatus.COMPLETED, None)

    def _read(self, event: WorkflowEvent, stored: Mapping[str, Any]) -> ContainerPayload:
        """The stored payload, opened and validated again: the policy may have changed since."""
        try:
            payload = parse_payload(
                WorkflowKind.CONTAINER,
                open_payload(self._secrets, WorkflowKind.CONTAINER, stored),
                self._policy,
            )
        except InvalidFieldsError as exc:
            # Stored before the operator's policy changed (or before a validation existed).
            raise BuildFailedError(
                f"the payload is not allowed: {exc}; update the workflow's payload"
            ) from exc
        except SecretError as exc:
            raise BuildFailedError(
                f"cannot read the payload's secrets: {exc}; tell the operator, or send the "
                "values again in an update of the workflow's payload"
            ) from exc
        except (AttributeError, TypeError, ValueError) as exc:
            # A shape no release stores (edited by hand?): the operator gets the details.
            logger.warning(
                "stored payload of workflow %s cannot be read",
                event.workflow_id,
                exc_info=exc,
                extra={"action": "build_payload_unreadable", "workflow_id": str(event.workflow_id)},
            )
            raise BuildFailedError(
                "the stored payload cannot be read: it is not in the form Chronoverse stores; "
                "update the workflow's payload"
            ) from exc
        assert isinstance(payload, ContainerPayload)
        return payload

    def _define(
        self, event: WorkflowEvent, payload: ContainerPayload, user_id: UUID
    ) -> ContainerDefinition:
        """The Docker part of a build, asked again while the engine is unreachable or failing."""
        try:
            return self._retrying(
                partial(self._define_once, event, payload, user_id), workflow_id=event.workflow_id
            )
        except DockerGaveUpError as exc:
            raise BuildFailedError(
                build_error(exc.fault, image=payload.image, failing_s=exc.failing_s)
            ) from exc

    def _define_once(
        self, event: WorkflowEvent, payload: ContainerPayload, user_id: UUID
    ) -> ContainerDefinition:
        """The image present, able to run something, resolved; the definition of its jobs."""
        image_id = self._images.ensure(payload.image, payload.pull_policy)
        nothing_to_run = missing_command(payload, self._images.argv(image_id))
        if nothing_to_run is not None:
            # Docker would refuse every job of this generation with the same words.
            raise BuildFailedError(nothing_to_run)
        return define(
            event.workflow_id,
            event.generation,
            payload,
            image_id,
            user_id=user_id,
            policy=self._policy,
            working_dir_in_image=bool(payload.working_dir)
            and image_has_path(
                self._docker,
                image_id,
                str(payload.working_dir),
                labels=helper_labels(self._installation),
            ),
        )

    def _retrying(self, step: Callable[[], T], *, workflow_id: UUID) -> T:
        """``step``, asked again while the Docker engine is unreachable or failing (5xx).

        Raises DockerGaveUpError when the engine fails for good (a 4xx, a timeout) or has been
        failing for longer than ``docker_retry_s``.
        """
        attempt = 0
        while True:
            try:
                result = step()
            except BuildFailedError:
                self._outage.over()  # the engine answered (the image is the problem)
                raise
            except (DockerException, requests.RequestException) as exc:
                fault = docker_fault(exc)
                if not fault.transient:
                    if fault.installation:  # unexpected: the operator gets the details
                        logger.error(
                            "Docker failed: %s",
                            fault.what,
                            exc_info=exc,
                            extra={"action": "docker_failed", "workflow_id": str(workflow_id)},
                        )
                    else:
                        self._outage.over()  # it answered
                    raise DockerGaveUpError(fault) from exc
                failing_s = self._outage.failing_s()
                wait = retry_wait(
                    attempt=attempt, failing_s=failing_s, budget_s=self._docker_retry_s
                )
                if wait is None:
                    logger.error(
                        "Docker engine failing for %.0f s, giving up: %s",
                        failing_s,
                        fault.what,
                        extra={"action": "docker_gave_up", "workflow_id": str(workflow_id)},
                    )
                    raise DockerGaveUpError(fault, failing_s=failing_s) from exc
                logger.warning(
                    "%s; retrying in %.1f s",
                    fault.what,
                    wait,
                    extra={"action": "docker_retry", "workflow_id": str(workflow_id)},
                )
                DOCKER_RETRIES.inc()
                time.sleep(wait)
                attempt += 1
            else:
                self._outage.over()
                return result

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
            if row is not None:
                self._alert(conn, row, event, status, error)
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

    def _alert(
        self,
        conn: Conn,
        row: Mapping[str, Any],
        event: WorkflowEvent,
        status: BuildStatus,
        error: str | None,
    ) -> None:
        """Tell the owner, in the transaction that moved the build."""
        moved = alerts.BuildMoved(
            workflow=alerts.WorkflowState.from_row(row),
            generation=event.generation,
            status=status,
            error=error,
        )
        alerts.write(conn, [alerts.decide(moved, public_url=self._public_url, now=utcnow())])

    def _stop_containers(self, workflow_id: UUID) -> None:
        """Stop (SIGTERM, then SIGKILL after the grace period) and remove its running containers.

        If Docker cannot do it, the error is logged and the event is done: each container still
        ends at its job's timeout, and redelivering the event would only stop the worker.
        """
        try:
            running = self._retrying(
                lambda: self._docker.containers.list(
                    all=True, filters={"label": f"{LABEL_WORKFLOW}={workflow_id}"}
                ),
                workflow_id=workflow_id,
            )
        except DockerGaveUpError as exc:
            self._stop_failed(workflow_id, None, exc)
            return
        for container in running:
            try:
                stopped = self._retrying(partial(self._stop, container), workflow_id=workflow_id)
            except DockerGaveUpError as exc:
                self._stop_failed(workflow_id, container.short_id, exc)
                continue
            if stopped:
                logger.info(
                    "stopped container %s of terminated workflow %s",
                    container.short_id,
                    workflow_id,
                    extra={"action": "container_stopped", "workflow_id": str(workflow_id)},
                )

    def _stop(self, container: Any) -> bool:
        try:
            container.stop(timeout=self._stop_grace_s)
            container.remove(force=True)
        except NotFound:
            return False  # its job finished and removed it meanwhile
        return True

    def _stop_failed(
        self, workflow_id: UUID, container: str | None, exc: DockerGaveUpError
    ) -> None:
        logger.error(
            "could not stop %s of terminated workflow %s: %s",
            f"container {container}" if container else "the containers",
            workflow_id,
            exc.fault.what,
            extra={"action": "container_stop_failed", "workflow_id": str(workflow_id)},
        )


class _Outage:
    """Since when the Docker engine has been failing: one clock for every build at once.

    A failure more than ``forget_after_s`` after the last one starts a new outage, so one that
    ended while no build was running does not count against the next.
    """

    def __init__(self, *, forget_after_s: float) -> None:
        self._forget_after_s = forget_after_s
        self._lock = threading.Lock()
        self._since: float | None = None
        self._last = 0.0

    def failing_s(self) -> float:
        """Seconds it has been failing, this failure included."""
        now = time.monotonic()
        with self._lock:
            if self._since is None or now - self._last > self._forget_after_s:
                self._since = now
            self._last = now
            return now - self._since

    def over(self) -> None:
        with self._lock:
            self._since = None
