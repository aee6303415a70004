"""schemathesis hooks for the API's fuzz runs: the rules JSON Schema cannot state, and the replays.

The OpenAPI document states every rule it can (patterns, lengths, the payload's shape by kind);
these are the rest, each stated in prose in the document and refused with a 422 (or 409) that
names the field. A failure is dropped here only when its request broke one of them, so a check
still fails for anything else. Loaded by tests/integration/schemathesis.toml (the CLI) and by
tests/integration/test_api_fuzz.py.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import httpx
import schemathesis
from schemathesis import Case, HookContext, Response
from schemathesis.core.failures import Failure
from schemathesis.openapi.checks import EnsureResourceAvailability, RejectedPositiveData

from chronoverse.errors import InvalidFieldsError
from chronoverse.payloads import (
    MAX_ARGV_BYTES,
    MAX_ENV_BYTES,
    MAX_IMAGE_NAME,
    MAX_PAYLOAD_BYTES,
    image_reference_error,
)
from chronoverse.schedules import ScheduleError, parse_cron
from chronoverse.secrets import MASK
from services.server.store.analytics import window

# Filled from responses as the run goes (CLI workers are threads of one process).
_KIND_OF_WORKFLOW: dict[str, str] = {}
_NAMED_BY_A_REPLAY: set[str] = set()


@schemathesis.hook
def after_call(context: HookContext, case: Case[Any], response: Response) -> None:
    body = _json(response)
    if not isinstance(body, Mapping):
        return
    for workflow in [body, *(body.get("workflows") or [])]:
        if isinstance(workflow, Mapping) and "kind" in workflow and "id" in workflow:
            _KIND_OF_WORKFLOW[str(workflow["id"])] = str(workflow["kind"])
    if response.headers.get("idempotent-replayed") == ["true"]:
        _NAMED_BY_A_REPLAY.update(str(body[key]) for key in ("id", "workflow_id") if key in body)


@schemathesis.hook
def filter_failure(
    context: HookContext, failure: Failure, case: Case[Any], response: Response
) -> bool:
    """Keep a failure unless it is one of the documented behaviours below."""
    if isinstance(failure, EnsureResourceAvailability):
        # A POST repeated with its Idempotency-Key gets the stored response back (marked
        # `Idempotent-Replayed: true`), as the IETF draft asks, even if the workflow or job it
        # names was deleted since, in a scenario this check did not see.
        return not _NAMED_BY_A_REPLAY & {str(v) for v in (case.path_parameters or {}).values()}
    if isinstance(failure, RejectedPositiveData) and response.status_code == 422:
        if None in (case.path_parameters or {}).values():
            # A link filled from a null field (a webhook's `workflow_id` is null when it covers
            # every workflow): the tool's request, not a documented one.
            return False
        if _error_fields(response) == {"cron"} and _impossible_cron(case):
            return False
        if case.path.endswith("/logs"):
            return not _unknown_attempt(case, response)
        if case.path.endswith("/analytics") and _error_fields(response) == {"since"}:
            return not _outside_the_window(case)
        payload = case.body.get("payload") if isinstance(case.body, Mapping) else None
        if isinstance(payload, Mapping) and (
            _other_kind(case, response, payload) or _unstated_rule(payload)
        ):
            return False
        return not _kept_schedule(case, response)
    return True


def _outside_the_window(case: Case[Any]) -> bool:
    """An analytics `since` that is in the future or more than the longest window ago: a rule
    about the present, which the document states in words."""
    since = (case.query or {}).get("since")
    try:
        window(datetime.fromisoformat(str(since)), now=datetime.now(UTC))
    except (InvalidFieldsError, ValueError):
        return True
    return False


def _kept_schedule(case: Case[Any], response: Response) -> bool:
    """An update of `timezone`, `dst` or the catch-up window that does not fit the schedule or
    catch-up mode the workflow keeps, which is its state, not the document's."""
    if case.method.upper() != "PUT" or case.path != "/workflows/{workflow_id}":
        return False
    fields = _error_fields(response)
    return bool(fields) and fields <= {"timezone", "dst", "catchup_window_minutes"}


def _impossible_cron(case: Case[Any]) -> bool:
    """A cron expression of the documented syntax that cronsim refuses: a range that runs
    backwards, or a date that never comes, which its pattern cannot tell."""
    sent = [c.get("cron") for c in (case.body, case.query) if isinstance(c, Mapping)]
    cron = next((c for c in sent if isinstance(c, str)), None)
    if cron is None:
        return False
    try:
        parse_cron(cron)
    except ScheduleError:
        return True
    return False


def _unknown_attempt(case: Case[Any], response: Response) -> bool:
    """Logs of an attempt the job has not had, or a cursor of another attempt than `attempt`:
    how many attempts a job has had is the job's state, not the document's."""
    query = case.query or {}
    if "attempt" not in query:
        return False
    attempt = str(query["attempt"])
    fields = _error_fields(response)
    if fields == {"attempt"}:
        return attempt != "1"  # every job has an attempt 1
    of_cursor, dot, _ = str(query.get("cursor", "")).partition(".")
    return fields == {"cursor"} and bool(dot) and int(of_cursor) != int(attempt)


def _other_kind(case: Case[Any], response: Response, payload: Mapping[str, Any]) -> bool:
    """A PUT payload for the other kind than the stored workflow's: OpenAPI cannot tie a request
    body to the kind of the resource it changes."""
    if case.method.upper() != "PUT" or case.path != "/workflows/{workflow_id}":
        return False
    workflow_id = str((case.path_parameters or {}).get("workflow_id"))
    if workflow_id not in _KIND_OF_WORKFLOW:
        # Made before this run (schemathesis reuses ids the API returned): ask the server.
        request = response.request
        found = httpx.get(
            str(request.url),
            headers={"Authorization": str(request.headers.get("Authorization", ""))},
            timeout=30,
        )
        if found.status_code == 200:
            _KIND_OF_WORKFLOW[workflow_id] = str(found.json()["kind"])
    stored = _KIND_OF_WORKFLOW.get(workflow_id)
    sent = "CONTAINER" if "image" in payload else "HEARTBEAT"
    return stored is not None and stored != sent


def _unstated_rule(payload: Mapping[str, Any]) -> bool:
    """A payload that breaks a rule JSON Schema cannot state: each volume name and path once,
    the image name's length as Docker counts it (with the registry it implies), the byte totals
    of argv, env and the payload, and `***` (keep the stored secret) where nothing is stored."""
    image = payload.get("image")
    if isinstance(image, str) and f"at most {MAX_IMAGE_NAME}" in (
        image_reference_error(image) or ""
    ):
        return True
    volumes = [v for v in payload.get("volumes") or [] if isinstance(v, Mapping)]
    for key in ("name", "path"):
        values = [str(v.get(key)) for v in volumes]
        if len(set(values)) != len(values):
            return True
    for key in ("command", "args"):
        if sum(len(str(item).encode()) for item in payload.get(key) or []) > MAX_ARGV_BYTES:
            return True
    env = payload.get("env") or {}
    if sum(len(k.encode()) + len(str(v).encode()) + 2 for k, v in env.items()) > MAX_ENV_BYTES:
        return True
    secrets = {**env, **(payload.get("headers") or {})}
    return MASK in secrets.values() or len(json.dumps(payload)) > MAX_PAYLOAD_BYTES


def _error_fields(response: Response) -> set[str]:
    body = _json(response)
    error = body.get("error") if isinstance(body, Mapping) else None
    details = error.get("details") if isinstance(error, Mapping) else None
    return {str(d.get("field")) for d in details or [] if isinstance(d, Mapping)}


def _json(response: Response) -> object:
    try:
        return response.json()
    except ValueError:
        return None
