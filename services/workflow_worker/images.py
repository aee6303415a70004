"""Making sure a CONTAINER workflow's image is present, per its pull policy, and runs something.

With several workflow workers, one image is pulled once: the puller holds a Redis lock (renewed
while the pull runs) and the others wait for it, then find the image present.
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

from chronoverse.errors import ChronoverseError
from chronoverse.payloads import ContainerPayload

logger = logging.getLogger(__name__)


class ImageUnavailableError(ChronoverseError):
    """The image cannot be had: the build fails with this message (a USER error)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


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
                    f"image {image} not found locally and pull_policy is never"
                )
        with self._pull_lock(image):
            if pull_policy != "always":
                local = self._local_id(image)  # another worker may have pulled it meanwhile
                if local is not None:
                    return local
            try:
                self._docker.images.pull(image)
            except (APIError, ImageNotFound) as exc:
                reason = getattr(exc, "explanation", None) or str(exc)
                where = "locally " if pull_policy != "always" else ""
                raise ImageUnavailableError(
                    f"image {image} not found {where}and pull failed: {reason}"
                ) from exc
        local = self._local_id(image)
        if local is None:
            raise ImageUnavailableError(f"image {image} was pulled but is not present")
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

    @contextmanager
    def _pull_lock(self, image: str) -> Iterator[None]:
        lock = self._redis.lock(
            f"chronoverse:pull:{image}",
            timeout=self._lock_ttl_s,
            blocking_timeout=self._wait_s,
            thread_local=False,
        )
        if not lock.acquire():
            raise ChronoverseError(f"waited {self._wait_s:.0f}s for another pull of {image}")
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
