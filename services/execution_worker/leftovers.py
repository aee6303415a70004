"""Containers an attempt leaves behind: stopping one for good, and keeping a dead attempt's output.

A worker that dies (``kill -9``, a lost host) leaves its job's container running. Before the job's
next attempt starts on this Docker daemon, and before the reaper removes an orphan, the container
is stopped, the output Docker kept of it is read back (both streams, with Docker's timestamps),
numbered by the same :class:`~chronoverse.logs.LineSplitter` so each line gets the seq the dead
worker gave it, shipped as the attempt named by its ``chronoverse.attempt`` label with an end
marker, and removed. The log processor stores a line once per (job, attempt, seq), so lines the
dead worker already shipped are not stored twice, and two workers salvaging one container at once
store it once.

Docker keeps a bounded copy (:data:`~services.execution_worker.sandbox.DOCKER_LOG`): when the copy
may have lost its beginning, its lines cannot be numbered and none is shipped; the attempt then
has no end marker, and readers say its log is incomplete.
"""

from __future__ import annotations

import heapq
import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any
from uuid import UUID

import docker
from docker.errors import APIError, DockerException, NotFound

from chronoverse.definitions import LABEL_ATTEMPT, LABEL_INSTALLATION, LABEL_JOB
from chronoverse.domain import LogStream, utcnow
from chronoverse.errors import PublishError
from chronoverse.logs import LineSplitter
from services.execution_worker.logship import LogShipper
from services.execution_worker.output import Output
from services.execution_worker.sandbox import DOCKER_LOG_FILE_BYTES

logger = logging.getLogger(__name__)

# Between the kills of a container Docker refused to stop (its first refusal, then these).
KILL_RETRY_DELAYS_S = (0.5, 1.0, 2.0)
# What Docker calls a container that does not run (``removing`` only once it no longer runs).
STOPPED = frozenset({"created", "exited", "dead", "removing"})
# A json-file record's bytes besides its escaped text: {"log":…,"stream":"stderr","time":"…"}\n
_RECORD_OVERHEAD = 80
# Below this many bytes of records, Docker never rotated the log: its copy is whole.
_WHOLE_BELOW = DOCKER_LOG_FILE_BYTES - 64 * 1024


def stop_container(container: Any, *, grace_s: int, job_id: str) -> DockerException | None:
    """Stop a container for good: SIGTERM, then SIGKILL after ``grace_s`` (at once when 0), and
    SIGKILL again while Docker refuses. None once it is stopped or gone, else the last refusal;
    each refusal is logged with its cause."""
    try:
        if grace_s > 0:
            container.stop(timeout=grace_s)
        else:
            container.kill()
        return None
    except DockerException as exc:
        if _stopped(container, exc):
            return None
        error = exc
    for attempt, delay in enumerate(KILL_RETRY_DELAYS_S, start=1):
        logger.error(
            "could not stop container %s of job %s: %s; killing it again in %.1fs",
            container.short_id,
            job_id,
            error,
            delay,
            exc_info=error if attempt == 1 else None,
            extra={"action": "container_stop_failed", "job_id": job_id},
        )
        time.sleep(delay)
        try:
            container.kill()
            return None
        except DockerException as exc:
            if _stopped(container, exc):
                return None
            error = exc
    logger.error(
        "gave up stopping container %s of job %s: %s",
        container.short_id,
        job_id,
        error,
        extra={"action": "container_unstoppable", "job_id": job_id},
    )
    return error


def remove_container(container: Any) -> bool:
    """Remove a container (forcibly: it may still run). False when it was gone already, or
    another remove of it is under way (Docker answers 409 to a second one); raises
    DockerException when Docker refuses otherwise."""
    try:
        container.remove(force=True)
        return True
    except NotFound:
        return False
    except APIError as exc:
        if exc.status_code == 409 and going(container):
            return False
        raise


def going(container: Any) -> bool:
    """Whether the container is gone or being removed (by anyone: its own worker after the
    outcome, another worker's reaper), reloading its state. A container being removed no longer
    runs: Docker says ``running`` until it is killed, ``removing`` after."""
    try:
        container.reload()
    except NotFound:
        return True
    return bool(container.status == "removing")


def _stopped(container: Any, exc: DockerException) -> bool:
    """Whether the refusal means there is nothing to stop: the container is gone, not running,
    or being removed (Docker answers 409 to killing a container that is not running)."""
    if isinstance(exc, NotFound):
        return True
    if not (isinstance(exc, APIError) and exc.status_code == 409):
        return False
    try:
        container.reload()
    except NotFound:
        return True
    except DockerException:
        return False
    return container.status in STOPPED


Entry = tuple[str, LogStream, bytes]  # (Docker's timestamp, stream, chunk)


class Leftovers:
    """Stops and removes the containers dead attempts left on this Docker daemon, keeping their
    output as their attempts'."""

    def __init__(
        self,
        docker_client: docker.DockerClient,
        shippers: Callable[[UUID, int], LogShipper],
        *,
        installation: str,
        max_log_chars: int,
    ) -> None:
        self._docker = docker_client
        self._shippers = shippers
        self._installation = installation
        self._max_log_chars = max_log_chars

    def clear(self, job_id: UUID) -> int:
        """Salvage every container of this job (before a new attempt starts); return how many
        it removed. One already gone or being removed is done: it no longer runs.

        Raises DockerException when one of them cannot be listed, stopped or removed: the new
        attempt must not start while an old one may still run.
        """
        found = self._docker.containers.list(
            all=True,
            filters={
                "label": [f"{LABEL_JOB}={job_id}", f"{LABEL_INSTALLATION}={self._installation}"]
            },
        )
        return sum(self.salvage(container) for container in found)

    def salvage(self, container: Any) -> bool:
        """Stop the container, ship its output as its attempt's, and remove it. False when it
        was gone or being removed already: whoever removes it has its output (its own worker
        shipped it before the outcome; another worker's salvage before its remove).

        Raises DockerException when it cannot be stopped or removed.
        """
        job = str(container.labels.get(LABEL_JOB, ""))
        error = stop_container(container, grace_s=0, job_id=job)  # its run is lost already
        if error is not None:
            raise error
        try:
            entries = self._entries(container)
            # Still there after the whole read, and not being removed: nobody removed it under
            # us, so the read is whole.
            if going(container):
                return False
        except NotFound:
            return False  # another worker salvaged and removed it
        self._keep(container, job, entries)
        if not remove_container(container):
            return False
        logger.warning(
            "removed container %s that attempt %s of job %s left running",
            container.short_id,
            container.labels.get(LABEL_ATTEMPT, "?"),
            job,
            extra={"action": "leftover_removed", "job_id": job},
        )
        return True

    def _keep(self, container: Any, job: str, entries: list[Entry]) -> None:
        """Ship the entries as the container's attempt's lines, when they can be numbered."""
        try:
            job_id = UUID(job)
            attempt = int(container.labels[LABEL_ATTEMPT])
        except (KeyError, ValueError):
            logger.warning(
                "container %s names no job attempt (started before attempts were labelled); "
                "its output is not kept",
                container.short_id,
                extra={"action": "leftover_output_dropped", "job_id": job},
            )
            return
        if _record_bytes(entries) >= _WHOLE_BELOW:
            logger.warning(
                "Docker may have kept only the end of attempt %d of job %s; its output is not "
                "kept, and its log stays incomplete",
                attempt,
                job,
                extra={"action": "leftover_output_dropped", "job_id": job},
            )
            return
        splitter = LineSplitter()
        shipper = self._shippers(job_id, attempt)
        output = Output(splitter, shipper, max_chars=self._max_log_chars)
        for stamp, stream, chunk in entries:
            output.feed(stream, chunk, _parse_stamp(stamp))
        now = utcnow()
        output.finish(now)
        shipper.add(splitter.flush(now))
        try:
            shipper.close(splitter.last_seq)
        except PublishError as exc:
            logger.error(
                "lines of attempt %d of job %s were lost: %s",
                attempt,
                job,
                exc,
                exc_info=exc,
                extra={"action": "logs_lost", "job_id": job},
            )

    def _entries(self, container: Any) -> list[Entry]:
        """Docker's copy of the output, both streams in the order Docker stamped them."""
        streams = [
            _stamped(
                LogStream.STDOUT,
                container.logs(
                    stdout=True, stderr=False, timestamps=True, stream=True, follow=False
                ),
            ),
            _stamped(
                LogStream.STDERR,
                container.logs(
                    stdout=False, stderr=True, timestamps=True, stream=True, follow=False
                ),
            ),
        ]
        # Each stream is in order; merged by Docker's timestamps (fixed width, so as text).
        return list(heapq.merge(*(list(s) for s in streams), key=lambda entry: entry[0]))


def _stamped(stream: LogStream, frames: Iterable[bytes]) -> Iterator[Entry]:
    """Docker's log records (one per frame): ``<RFC 3339 timestamp> <chunk>``."""
    for frame in frames:
        stamp, _, chunk = frame.partition(b" ")
        yield stamp.decode("ascii", "replace"), stream, chunk


def _parse_stamp(stamp: str) -> datetime:
    try:
        return datetime.fromisoformat(stamp)
    except ValueError:
        return utcnow()


def _record_bytes(entries: list[Entry]) -> int:
    """An upper bound of the bytes Docker's json-file driver took for these records: each chunk
    as JSON (Go escapes <, > and & as six bytes), plus the record's other fields."""
    total = 0
    for _, _, chunk in entries:
        text = chunk.decode("utf-8", "replace")
        escaped = len(json.dumps(text)) + 5 * sum(text.count(c) for c in "<>&")
        total += escaped + _RECORD_OVERHEAD
    return total
