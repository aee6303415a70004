"""Why a build failed, in words the workflow's owner can act on; which Docker errors to retry.

Pure: the builder catches, this module decides. A build fails for the workflow's own reasons (a
reference Docker refuses, an image that cannot be had, a stored payload that no longer reads),
which its owner fixes in the payload, or for the installation's (the Docker engine unreachable,
failing or too slow), which only the operator can fix. The second kind is first retried for a
bounded time, since a Docker restart takes seconds and must not fail builds. Every message is one
line, without a stack trace or a secret value; the log keeps the cause for the operator.
"""

from __future__ import annotations

from dataclasses import dataclass

import requests
from docker.errors import APIError, DockerException

from chronoverse.errors import ChronoverseError

# A build runs when its generation is new, so building again means changing the payload.
INSTALLATION_ADVICE = (
    "this is a problem of the installation, not of the workflow: tell the operator, and once it "
    "is fixed, update the workflow's payload to build it again"
)
PAYLOAD_ADVICE = "check the workflow's payload"
# Long values (the 300-character image of issue 14) are cut in messages.
_SHOWN = 80
_EXPLANATION = 300


class BuildFailedError(ChronoverseError):
    """This generation's build fails with ``message``: what happened and what to do."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True, kw_only=True)
class DockerFault:
    """An error of the Docker client, as a build sees it."""

    what: str  # what happened, e.g. "the Docker engine could not be reached (Connection refused)"
    transient: bool  # asking again shortly may succeed (the engine restarting or overloaded)
    installation: bool  # the operator's to fix, not the payload's


def docker_fault(exc: DockerException | requests.RequestException) -> DockerFault:
    """Classify an error the Docker client raised during a build.

    Unreachable (refused, reset, no socket) and 5xx answers are transient; a timeout is not (the
    client already waited its whole timeout); a 4xx is the request's own fault.
    """
    if isinstance(exc, APIError) and exc.status_code is not None:
        explanation = one_line(str(exc.explanation or exc), _EXPLANATION)
        if exc.status_code >= 500:
            return DockerFault(
                what=f"the Docker engine failed: {explanation}", transient=True, installation=True
            )
        return DockerFault(
            what=f"Docker refused a request: {explanation}", transient=False, installation=False
        )
    if isinstance(exc, requests.Timeout) and not isinstance(exc, requests.ConnectionError):
        return DockerFault(
            what="the Docker engine did not answer in time", transient=False, installation=True
        )
    if isinstance(exc, requests.ConnectionError | requests.exceptions.ChunkedEncodingError):
        return DockerFault(
            what=f"the Docker engine could not be reached ({root_cause(exc)})",
            transient=True,
            installation=True,
        )
    return DockerFault(
        what=f"the Docker client failed: {one_line(str(exc), _EXPLANATION)}",
        transient=False,
        installation=True,
    )


class DockerGaveUpError(ChronoverseError):
    """The Docker engine failed for good, or kept failing for longer than the retries allow."""

    def __init__(self, fault: DockerFault, *, failing_s: float = 0.0) -> None:
        super().__init__(fault.what)
        self.fault = fault
        self.failing_s = failing_s


def build_error(fault: DockerFault, *, image: str, failing_s: float = 0.0) -> str:
    """The ``build_error`` of a build that ``fault`` ended, the engine failing for ``failing_s``."""
    failing = f"; it has been failing for {failing_s:.0f} s" if failing_s >= 1 else ""
    advice = INSTALLATION_ADVICE if fault.installation else PAYLOAD_ADVICE
    return f"{fault.what} while building with image {shown(image)}{failing}; {advice}"


def retry_wait(
    *, attempt: int, failing_s: float, budget_s: float, first_s: float = 0.5, cap_s: float = 8.0
) -> float | None:
    """How long to wait before asking the engine again, or None to give up.

    ``attempt`` counts this call's retries so far (the wait doubles from ``first_s`` up to
    ``cap_s``); ``failing_s`` is how long the engine has been failing, for every build at once, so
    a long outage fails new builds at once instead of making each wait ``budget_s`` again.
    """
    left = budget_s - failing_s
    if left <= 0:
        return None
    return min(first_s * 2.0**attempt, cap_s, left)


def root_cause(exc: BaseException) -> str:
    """The operating system's words for a failed connection ("Connection refused"), if any."""
    seen: set[int] = set()
    pending: list[object] = [exc]
    while pending:
        current = pending.pop()
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OSError) and current.strerror:
            return current.strerror
        # requests and urllib3 keep the cause in args and `reason` rather than in __cause__.
        pending += [current.__cause__, current.__context__, getattr(current, "reason", None)]
        pending += list(current.args)
    return "connection failed"


def shown(text: str, limit: int = _SHOWN) -> str:
    """``text`` for a message: whole if short, else its start and its length."""
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


def one_line(text: str, limit: int = _SHOWN) -> str:
    """``text`` with its whitespace runs, line breaks included, made single spaces; cut if long."""
    return shown(" ".join(text.split()), limit)
