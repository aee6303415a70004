"""The workflow form of the dashboard: its fields as typed, the API request they make, and where
each error of that request is shown.

The form is plain text inputs: lists one item a line, headers ``Name: value`` lines, env
``KEY=VALUE`` lines. :class:`WorkflowForm` turns them into the JSON the API takes
(:class:`~services.server.schemas.WorkflowCreate`, :class:`~services.server.schemas.WorkflowUpdate`)
without judging the values: a number that does not parse is passed on as text, so the application
layer's validation says what is wrong, under the field name the JSON API uses. :func:`input_for`
maps that name back to the form's input.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, TypeVar

from pydantic import BaseModel

from chronoverse.errors import FieldError, InvalidFieldsError
from chronoverse.schedules import known_zones
from services.server.schemas import WorkflowCreate, WorkflowOut, WorkflowUpdate, parse_model

HEARTBEAT_INPUTS = ("endpoint", "expected_status_code", "timeout_seconds", "headers")
CONTAINER_INPUTS = ("image", "command", "args", "env", "working_dir")
# Top-level request fields that are inputs of the form under the same name.
_TOP_INPUTS = frozenset(
    {"name", "kind", "interval", "cron", "timezone", "max_consecutive_job_failures_allowed"}
)
GENERAL = "form"  # errors that belong to no input, shown above the form
_DEFAULT_EXPECTED_STATUS = "200"
_DEFAULT_TIMEOUT = "10"
Request = TypeVar("Request", bound=BaseModel)


@functools.cache
def zone_names() -> tuple[str, ...]:
    """The IANA zones for the timezone input's suggestions (scanned once: it reads the disk)."""
    return tuple(sorted(known_zones()))


@dataclass(frozen=True, kw_only=True)
class WorkflowForm:
    """The form's inputs as the user typed them (all text, as a form posts them)."""

    name: str = ""
    kind: str = "HEARTBEAT"
    schedule: str = "interval"  # which of interval and cron the user picked
    interval: str = "5"
    cron: str = ""
    timezone: str = "UTC"
    dst_gap: str = "shift"
    dst_overlap: str = "once"
    max_consecutive_job_failures_allowed: str = "3"
    endpoint: str = ""
    expected_status_code: str = _DEFAULT_EXPECTED_STATUS
    timeout_seconds: str = _DEFAULT_TIMEOUT
    headers: str = ""
    image: str = ""
    command: str = ""
    args: str = ""
    env: str = ""
    working_dir: str = ""

    @classmethod
    def from_form(cls, form: Mapping[str, Any]) -> WorkflowForm:
        """The inputs of a posted form; a missing input keeps its default."""
        given = {
            f.name: value.replace("\r\n", "\n")
            for f in fields(cls)
            if isinstance(value := form.get(f.name), str)
        }
        return cls(**given)

    @classmethod
    def of(cls, workflow: WorkflowOut) -> WorkflowForm:
        """The form of a saved workflow, secret values masked as the API returns them."""
        payload = workflow.payload
        base = cls(
            name=workflow.name,
            kind=workflow.kind.value,
            schedule="interval" if workflow.interval is not None else "cron",
            interval=str(workflow.interval) if workflow.interval is not None else "5",
            cron=workflow.cron or "",
            timezone=workflow.timezone,
            dst_gap=workflow.dst.gap if workflow.dst else "shift",
            dst_overlap=workflow.dst.overlap if workflow.dst else "once",
            max_consecutive_job_failures_allowed=str(workflow.max_consecutive_job_failures_allowed),
        )
        if workflow.kind == "HEARTBEAT":
            return replace(
                base,
                endpoint=payload.get("endpoint") or "",
                expected_status_code=str(
                    payload.get("expected_status_code", _DEFAULT_EXPECTED_STATUS)
                ),
                timeout_seconds=_number_text(payload.get("timeout_seconds", _DEFAULT_TIMEOUT)),
                headers="\n".join(f"{k}: {v}" for k, v in payload.get("headers", {}).items()),
            )
        return replace(
            base,
            image=payload.get("image", ""),
            command="\n".join(payload.get("command") or []),
            args="\n".join(payload.get("args") or []),
            env="\n".join(f"{k}={v}" for k, v in payload.get("env", {}).items()),
            working_dir=payload.get("working_dir") or "",
        )

    def create_request(self) -> WorkflowCreate:
        """The API's create request; InvalidFieldsError naming the API's fields."""
        return self._request(WorkflowCreate, {"kind": self.kind}, stored={})

    def update_request(self, current: WorkflowOut) -> WorkflowUpdate:
        """The API's update request: every input, over the stored payload so that what the form
        does not show (resources, volumes, network...) is kept."""
        return self._request(WorkflowUpdate, {}, stored=current.payload)

    def _request(
        self, model: type[Request], more: dict[str, Any], *, stored: Mapping[str, Any]
    ) -> Request:
        body: dict[str, Any] = {"name": self.name, **more, **self.schedule_fields()}
        if (limit := _integer(self.max_consecutive_job_failures_allowed)) is not None:
            body["max_consecutive_job_failures_allowed"] = limit
        # The payload is checked by the use case, against the kind and the operator's policy;
        # what the form cannot even read (a line without its separator) is said with the rest.
        unreadable: list[FieldError] = []
        try:
            body["payload"] = self._payload(stored)
        except InvalidFieldsError as unread:
            unreadable = unread.errors
        try:
            request = parse_model(model, body)
        except InvalidFieldsError as refused:
            raise InvalidFieldsError([*unreadable, *refused.errors]) from refused
        if unreadable:
            raise InvalidFieldsError(unreadable)
        return request

    def schedule_fields(self) -> dict[str, Any]:
        """The schedule the form gives, as the API's fields (`interval`, or `cron` and its zone)."""
        if self.schedule == "cron":
            return {
                "cron": self.cron.strip() or None,
                "timezone": self.timezone.strip() or None,
                "dst": {"gap": self.dst_gap, "overlap": self.dst_overlap},
            }
        return {"interval": _integer(self.interval)}

    def _payload(self, stored: Mapping[str, Any]) -> dict[str, Any]:
        if self.kind == "CONTAINER":
            return {
                **stored,
                "image": self.image.strip(),
                "command": _lines(self.command) or None,
                "args": _lines(self.args),
                "env": _pairs(self.env, "=", "payload.env", "KEY=VALUE"),
                "working_dir": self.working_dir.strip() or None,
            }
        headers = _pairs(self.headers, ":", "payload.headers", "Name: value")
        status = self.expected_status_code.strip()
        timeout = self.timeout_seconds.strip()
        if not self.endpoint.strip():
            # A liveness job; options typed without an endpoint are sent, so the API says why.
            liveness: dict[str, Any] = {}
            if headers:
                liveness["headers"] = headers
            if status not in ("", _DEFAULT_EXPECTED_STATUS):
                liveness["expected_status_code"] = _integer(status)
            if timeout not in ("", _DEFAULT_TIMEOUT):
                liveness["timeout_seconds"] = _decimal(timeout)
            return liveness
        check: dict[str, Any] = {"endpoint": self.endpoint.strip(), "headers": headers}
        if "method" in stored:
            check["method"] = stored["method"]
        if status:
            check["expected_status_code"] = _integer(status)
        if timeout:
            check["timeout_seconds"] = _decimal(timeout)
        return check


def input_for(field: str, kind: str) -> str:
    """The form input that shows an error of the API's ``field`` (``payload.env.KEY``: env)."""
    head, _, rest = field.partition(".")
    if head == "payload":
        name = rest.partition(".")[0]
        inputs = CONTAINER_INPUTS if kind == "CONTAINER" else HEARTBEAT_INPUTS
        return name if name in inputs else GENERAL
    if head == "dst":
        return "dst_overlap" if rest.startswith("overlap") else "dst_gap"
    return head if head in _TOP_INPUTS else GENERAL


def errors_by_input(errors: Iterable[FieldError], kind: str) -> dict[str, list[str]]:
    """Each error's message under the input that shows it; a general one keeps its field name."""
    shown: dict[str, list[str]] = {}
    for error in errors:
        where = input_for(error.field, kind)
        message = error.message if where != GENERAL else f"{error.field}: {error.message}"
        shown.setdefault(where, []).append(message)
    return shown


def _lines(text: str) -> list[str]:
    """One item a line; blank lines are left out."""
    return [line for line in text.split("\n") if line.strip()]


def _pairs(text: str, separator: str, field: str, shape: str) -> dict[str, str]:
    """``KEY<separator>value`` lines as a mapping (the value without leading spaces)."""
    pairs: dict[str, str] = {}
    bad: list[FieldError] = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        key, found, value = line.partition(separator)
        if not found:
            bad.append(FieldError(field, f"line {number}: write one {shape} a line"))
            continue
        pairs[key.strip()] = value.lstrip()
    if bad:
        raise InvalidFieldsError(bad)
    return pairs


def _integer(text: str) -> int | str | None:
    """The number typed; text that is not one goes on as text, for the API to refuse."""
    text = text.strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        return text


def _decimal(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text


def _number_text(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
