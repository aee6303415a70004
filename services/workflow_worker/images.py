"""Making sure a CONTAINER workflow's image is present, per its pull policy, and runs something.

With several workflow workers, one image is pulled once: the puller holds a Redis lock (renewed
while the pull runs) and the others wait for it, then find the image present.

What is the image's fault (a reference Docker refuses, an image that is absent and cannot be
pulled, a wait for another worker's pull that does not end) raises :class:`ImageUnavailableError`
with the build's message. An error of the Docker engine itself (unreachable, 5xx) is left to the
builder, which retries it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import docker
import redis
from docker.errors import APIError, ImageNotFound
from redis.exceptions import LockError

from chronoverse.payloads import ContainerPayload
from services.workflow_worker.failures import BuildFailedError, one_line, shown

logger = logging.getLogger(__name__)


class ImageUnavailableError(BuildFailedError):
    """The image cannot be had: the build fails with this message (a USER error)."""


@dataclass(frozen=True, kw_only=True)
class ImageArgv:
    """What an image runs when a container names no command: its ENTRYPOINT and CMD."""

    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ImageArgv:
        """From the ``Config`` of ``docker image inspect`` (either may be null)."""
        return cls(
            entrypoint=tuple(config.get("Entrypoint") or ()), cmd=tuple(config.get("Cmd") or ())
        )


def missing_command(payload: ContainerPayload, image: ImageArgv) -> str | None:
    """Why a container of ``payload`` would have nothing to run, or None if it has something.

    Docker's own rule, said at build time rather than by every job: a payload ``command`` is
    the entrypoint (an empty one drops the image's); ``args``, or else the image's CMD when no
    command is given, follow it; with neither, Docker refuses "No command specified".
    """
    if payload.command:
        return None
    entrypoint = image.entrypoint if payload.command is None else ()
    if entrypoint or payload.args or image.cmd:
        return None
    if payload.command is None:
        why = f"the image {payload.image} has neither ENTRYPOINT nor CMD"
    else:
        why = f"an empty `command` drops the ENTRYPOINT and the image {payload.image} has no CMD"
    return f"No command specified: {why}; set `command` in the payload"


def pull_lock_name(image: str) -> str:
    """The Redis lock a worker holds while it pulls ``image``."""
    return f"chronoverse:pull:{image}"


class Images:
    def __init__(
        self,
        docker_client: docker.DockerClient,
        redis_client: redis.Redis,
        *,
        lock_ttl_s: float = 30.0,
        wait_s: float = 600.0,
    ) -> None:
        self._docker = docker_client
        self._redis = redis_client
        self._lock_ttl_s = lock_ttl_s
        self._wait_s = wait_s

    def ensure(self, image: str, pull_policy: str) -> str:
        """Return the image's ID, pulling it when the policy says so."""
        if pull_policy != "always":
            local = self._local_id(image)
            if local is not None:
                return local
            if pull_policy == "never":
                raise ImageUnavailableError(
                    f"image {shown(image)} not found locally and pull_policy is never"
                )
        with self._pull_lock(image):
            if pull_policy != "always":
                local = self._local_id(image)  # another worker may have pulled it meanwhile
                if local is not None:
                    return local
            try:
                self._docker.images.pull(image)
            except APIError as exc:  # the registry's answer, relayed by Docker (a 5xx too)
                where = "locally " if pull_policy != "always" else ""
                raise ImageUnavailableError(
                    f"image {shown(image)} not found {where}and pull failed: {_reason(exc, image)}"
                ) from exc
        local = self._local_id(image)
        if local is None:
            raise ImageUnavailableError(f"image {shown(image)} was pulled but is not present")
        return local

    def argv(self, image_id: str) -> ImageArgv:
        """The ENTRYPOINT and CMD of a present image."""
        try:
            config = self._docker.images.get(image_id).attrs.get("Config") or {}
        except ImageNotFound as exc:  # removed since it was made present
            raise ImageUnavailableError(f"image {image_id} is no longer present") from exc
        return ImageArgv.from_config(config)

    def _local_id(self, image: str) -> str | None:
        try:
            return str(self._docker.images.get(image).id)
        except ImageNotFound:
            return None
        except APIError as exc:
            if exc.is_client_error():  # e.g. 400 "repository name must not be more than 255…"
                raise ImageUnavailableError(
                    f"Docker refuses the image reference {shown(image)}: {_reason(exc, image)}; "
                    "correct `image` in the workflow's payload"
                ) from exc
            raise

    @contextmanager
    def _pull_lock(self, image: str) -> Iterator[None]:
        lock = self._redis.lock(
            pull_lock_name(image),
            timeout=self._lock_ttl_s,
            blocking_timeout=self._wait_s,
            thread_local=False,
        )
        if not lock.acquire():
            raise ImageUnavailableError(
                f"waited {self._wait_s:.0f} s for another workflow worker's pull of image "
                f"{shown(image)}, which has not finished; update the workflow's payload to build "
                "it again later, and tell the operator if this repeats"
            )
        done = threading.Event()

        def renew() -> None:
            while not done.wait(self._lock_ttl_s / 3):
                try:
                    lock.extend(self._lock_ttl_s, replace_ttl=True)
                except LockError:
                    return

        renewer = threading.Thread(target=renew, name="pull-lock", daemon=True)
        renewer.start()
        try:
            yield
        finally:
            done.set()
            renewer.join()
            try:
                lock.release()
            except LockError:
                logger.warning(
                    "pull lock of %s expired before release",
                    image,
                    extra={"action": "pull_lock_lost"},
                )


def _reason(exc: APIError, image: str) -> str:
    """Docker's explanation on one line, without the reference it repeats ("no such image: …")."""
    text = " ".join(str(exc.explanation or exc).split())
    for prefix in (f"no such image: {image}: ", f"{image}: "):
        text = text.removeprefix(prefix)
    return one_line(text.replace(image, shown(image)), 300)
