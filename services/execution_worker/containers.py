"""Running a CONTAINER job: definition, volumes, container, live log lines, timeout, cleanup.

Every job container runs in the operator's :class:`~services.execution_worker.sandbox.Sandbox`,
whatever its payload says. The definition it runs comes from the sealed Redis cache or, failing
that, from Postgres, and is checked against the policy again on every run. The container always
carries the labels `chronoverse.job_id`, `chronoverse.workflow_id`, `chronoverse.lease_token` and
`chronoverse.attempt`, and is always removed. Two attempts of one job never run at once: before an
attempt starts, the containers earlier attempts left behind (their worker died) are stopped and
removed, their output kept as theirs (:mod:`services.execution_worker.leftovers`); the
:class:`~services.execution_worker.reaper.Reaper` does the same with orphans meanwhile. A finished
container is removed while its job's log is ended and its outcome recorded, not before, unless
the job is to be retried (:mod:`services.execution_worker.removals`).

The outcome is the container's, whatever happens to its log: lines that could not be shipped are
recorded as a gap in the job's log, never as a reason to run it again. A container that outlives
its timeout is stopped, and killed again while Docker refuses; one that cannot be stopped at all
ends the job as a SYSTEM failure and is left to the reaper. What its exit or a Docker error means
for the job is decided in :mod:`services.execution_worker.results`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, cast
from uuid import UUID

import docker
import redis
from docker.errors import DockerException, ImageNotFound
from docker.types import CancellableStream
from docker.utils.socket import STDERR, frames_iter_no_tty

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
from services.execution_worker.leftovers import Leftovers, stop_container
from services.execution_worker.logship import LogShipper
from services.execution_worker.metrics import DEFINITIONS_REBUILT
from services.execution_worker.output import Output
from services.execution_worker.removals import Removals, after_the_outcome, remove
from services.execution_worker.sandbox import Sandbox
from services.execution_worker.volumes import ensure_volume

logger = logging.getLogger(__name__)

ShipperFactory = Callable[[UUID, int], LogShipper]  # (job, attempt)
RecordContainer = Callable[[str], bool]
RecordLogsLost = Callable[[], None]
TouchVolume = Callable[[UUID, str, UUID], UUID]  # (owner, name, job) -> the volume's id
if TYPE_CHECKING:
    Frames = CancellableStream[tuple[bytes | None, bytes | None]]  # (stdout, stderr) as they come


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
        leftovers: Leftovers,
        stop_grace_s: int,
        max_log_chars: int,
        installation: str,
        removal_threads: int = 4,
    ) -> None:
        self._docker = docker_client
        self._definitions = definitions
        self._secrets = secrets
        self._policy = policy
        self._sandbox = sandbox
        self._shippers = shippers
        self._touch_volume = touch_volume
        self._leftovers = leftovers
        self._stop_grace_s = stop_grace_s
        self._max_log_chars = max_log_chars
        self._installation = installation
        self._removals = Removals(max_workers=removal_threads)

    def removing(self) -> set[UUID]:
        """The jobs whose finished container is still being removed (the reaper's to leave)."""
        return self._removals.pending()

    def close(self, *, timeout_s: float = 30.0) -> None:
        """Wait (bounded) for the containers being removed."""
        self._removals.close(timeout_s=timeout_s)

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
        record_logs_lost: RecordLogsLost,
    ) -> RunResult:
        splitter = LineSplitter()
        shipper = self._shippers(job_id, attempt)
        try:
            # No overlap: an earlier attempt's container goes before this one is created (the
            # first attempt has none: an attempt's container is created after its claim).
            if attempt > 1:
                self._removals.wait(job_id)  # this worker's own removal of it, if under way
                try:
                    self._leftovers.clear(job_id)
                except DockerException as exc:
                    return results.leftover_not_removed(exc)
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
                attempt,
            )
        finally:
            # Every CONTAINER job ends its log stream, even one that never started. Whatever
            # happens to it, the result above stands: lost lines are a gap, never a re-run.
            if not self._end_logs(job_id, attempt, splitter, shipper):
                record_logs_lost()

    def _end_logs(
        self, job_id: UUID, attempt: int, splitter: LineSplitter, shipper: LogShipper
    ) -> bool:
        """Ship the last lines and the end marker; False (logged) when lines were lost."""
        try:
            shipper.add(splitter.flush(utcnow()))
            shipper.close(splitter.last_seq)
            return True
        except Exception as exc:  # a PublishError, or a producer that broke: the same gap
            logger.error(
                "lines of job %s attempt %d were lost: %s",
                job_id,
                attempt,
                exc,
                exc_info=exc,
                extra={"action": "logs_lost", "job_id": str(job_id), "attempt": attempt},
            )
            return False

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
        attempt: int,
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
            confined = self._sandbox.host_config(definition)
            created = self._docker.api.create_container(
                image=definition.image_id,
                entrypoint=definition.entrypoint,
                command=definition.command or None,
                environment=definition.env,
                working_dir=definition.working_dir,
                labels=labels(
                    job_id, workflow_id, lease_token, self._installation, attempt=attempt
                ),
                detach=True,
                user=confined.pop("user"),
                host_config=self._docker.api.create_host_config(**confined),
            )
            # What `containers.create` does, less the inspect it makes afterwards: nothing here
            # reads the container's attributes, only its id.
            container = self._docker.containers.prepare_model({"Id": created["Id"]})
        except DockerException as exc:
            return results.create_error(exc, image=definition.image)
        try:
            if not record_container(str(container.id)):
                result = results.lease_lost_before_start()
            else:
                result = self._watch(
                    container,
                    definition,
                    Output(splitter, shipper, max_chars=self._max_log_chars),
                    str(job_id),
                )
        except DockerException as exc:
            result = results.run_error(exc)
        except BaseException:
            remove(container, job_id)
            raise
        # Its output is read to the end (or it never started). A final outcome is recorded while
        # the container is removed; a retry is written only once it is gone (or left to the
        # reaper), never while it may still run.
        if after_the_outcome(result):
            self._removals.remove(container, job_id)
        else:
            remove(container, job_id)
        return result

    def _watch(
        self, container: Any, definition: ContainerDefinition, output: Output, job_id: str
    ) -> RunResult:
        # Attach before start, so not a byte of output is missed.
        stream = _attach(self._docker.api, container.id)
        try:
            container.start()
        except DockerException as exc:
            _end(stream)
            _release(stream)
            return results.start_error(exc)
        timeout = _TimeoutStop(container, stream, grace_s=self._stop_grace_s, job_id=job_id)
        timer = threading.Timer(definition.timeout_s, timeout)
        timer.daemon = True
        timer.start()
        try:
            for out, err in stream:
                now = utcnow()
                output.feed(LogStream.STDOUT, out, now)
                output.feed(LogStream.STDERR, err, now)
        finally:
            timer.cancel()
            timer.join()  # a stop under way ends (stopped, or given up) before the result
            _release(stream)
        output.finish(utcnow())
        if timeout.error is not None:
            return results.unstoppable(timeout.error, timeout_s=definition.timeout_s)
        status = container.wait()
        return results.container_exit(
            status, timed_out=timeout.fired, timeout_s=definition.timeout_s
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


class _TimeoutStop:
    """Called when a container's time is up: stops it (see :func:`stop_container`). When Docker
    will not stop it at all, closes its output stream so the job ends anyway, with ``error``."""

    def __init__(self, container: Any, stream: Frames, *, grace_s: int, job_id: str):
        self._container = container
        self._stream = stream
        self._grace_s = grace_s
        self._job_id = job_id
        self.fired = False
        self.error: DockerException | None = None

    def __call__(self) -> None:
        self.fired = True
        error = stop_container(self._container, grace_s=self._grace_s, job_id=self._job_id)
        if error is not None:
            self.error = error
            _end(self._stream)


def _attach(api: docker.APIClient, container_id: str) -> Frames:
    """Both output streams of a container not yet started, as ``api.attach(..., demux=True)``
    streams them, less the inspect that call makes to learn whether the container has a TTY: a
    job container never has."""
    sock = api.attach_socket(
        container_id, params={"stdout": 1, "stderr": 1, "stream": 1, "logs": 1}
    )
    return CancellableStream(_demux(sock), sock._response)


def _demux(sock: Any) -> Iterator[tuple[bytes | None, bytes | None]]:
    """Docker's multiplexed frames as (stdout, stderr) chunks, one of them None."""
    for stream, data in frames_iter_no_tty(sock):
        chunk = cast(bytes, data)  # read from the socket; the stubs say str too
        yield (None, chunk) if stream == STDERR else (chunk, None)


def _end(stream: Frames) -> None:
    """End an attach stream from another thread: its reader sees the end at once."""
    try:
        stream.close()  # shuts the socket down
    except OSError:
        pass  # already closed by the daemon


def _release(stream: Frames) -> None:
    """Close the attach stream's response (by the thread that read it, once done): it holds the
    socket's file, and the socket stays open until it is closed."""
    response = getattr(stream, "_response", None)
    if response is not None:
        response.close()
