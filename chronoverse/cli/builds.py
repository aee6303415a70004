"""Waiting for a workflow's build: the verdict on one reading of the workflow (pure), and the
polling loop behind `workflows wait` and `workflows create|update --wait`."""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Mapping
from typing import Any

from chronoverse.cli.errors import CliError

DEFAULT_TIMEOUT_S = 600.0
FIRST_POLL_S = 0.25
MAX_POLL_S = 2.0


class Verdict(enum.StrEnum):
    PENDING = "PENDING"
    BUILT = "BUILT"
    FAILED = "FAILED"
    TERMINATED = "TERMINATED"


def verdict(workflow: Mapping[str, Any]) -> Verdict:
    """Whether a workflow (as the API shows it) can run jobs, never will, or is still building."""
    if workflow["build_status"] == "FAILED":
        return Verdict.FAILED
    if workflow["terminated_at"]:
        return Verdict.TERMINATED
    if workflow["build_status"] == "COMPLETED":
        return Verdict.BUILT
    return Verdict.PENDING


def failure(workflow: Mapping[str, Any], found: Verdict, *, timeout_s: float) -> CliError:
    """The error a wait ends with when ``found`` is not BUILT; the JSON form holds the workflow."""
    name = f"workflow {workflow['id']}"
    extra = {"workflow": dict(workflow)}
    if found is Verdict.FAILED:
        reason = workflow["build_error"] or "no reason given"
        return CliError("build_failed", f"the build of {name} FAILED: {reason}", extra=extra)
    if found is Verdict.TERMINATED:
        reason = workflow["terminated_reason"] or "no reason given"
        return CliError(
            "workflow_terminated", f"{name} was terminated ({reason}); it runs no jobs", extra=extra
        )
    return CliError(
        "timeout",
        f"the build of {name} is still {workflow['build_status']} after {timeout_s:g} seconds",
        extra=extra,
    )


def wait_for_build(
    fetch: Callable[[], Mapping[str, Any]],
    *,
    timeout_s: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Mapping[str, Any]:
    """Poll until the build is COMPLETED and return the workflow, or raise a CliError saying why
    it never will be (FAILED, terminated) or that ``timeout_s`` passed first."""
    deadline = clock() + timeout_s
    delay = FIRST_POLL_S
    while True:
        workflow = fetch()
        found = verdict(workflow)
        if found is Verdict.BUILT:
            return workflow
        remaining = deadline - clock()
        if found is not Verdict.PENDING or remaining <= 0:
            raise failure(workflow, found, timeout_s=timeout_s)
        sleep(min(delay, remaining))
        delay = min(delay * 2, MAX_POLL_S)
