"""The workflow form's inputs to the API's requests, and each API field back to its input."""

from __future__ import annotations

import pytest

from chronoverse.errors import FieldError, InvalidFieldsError
from services.server.schemas import WorkflowCreate
from services.server.web.workflow_form import WorkflowForm, errors_by_input, input_for


@pytest.mark.parametrize(
    ("field", "kind", "shown_at"),
    [
        ("payload.image", "CONTAINER", "image"),
        ("payload.env.API_KEY", "CONTAINER", "env"),
        ("payload.args.2", "CONTAINER", "args"),
        ("payload.resources.memory_mb", "CONTAINER", "form"),  # not an input of the form
        ("payload.endpoint", "HEARTBEAT", "endpoint"),
        ("payload.headers", "HEARTBEAT", "headers"),
        ("payload.image", "HEARTBEAT", "form"),
        ("payload", "CONTAINER", "form"),
        ("dst.gap", "HEARTBEAT", "dst_gap"),
        ("dst.overlap", "HEARTBEAT", "dst_overlap"),
        ("interval", "HEARTBEAT", "interval"),
        ("timezone", "CONTAINER", "timezone"),
        (
            "max_consecutive_job_failures_allowed",
            "HEARTBEAT",
            "max_consecutive_job_failures_allowed",
        ),
        ("body", "HEARTBEAT", "form"),
    ],
)
def test_each_api_field_is_shown_at_its_input(field: str, kind: str, shown_at: str) -> None:
    assert input_for(field, kind) == shown_at


def test_general_errors_keep_their_field_name() -> None:
    shown = errors_by_input(
        [FieldError("payload.image", "bad"), FieldError("payload.volumes", "too many")], "CONTAINER"
    )
    assert shown == {"image": ["bad"], "form": ["payload.volumes: too many"]}


def test_a_container_form_becomes_the_apis_request() -> None:
    form = WorkflowForm.from_form(
        {
            "name": " box ",
            "kind": "CONTAINER",
            "schedule": "cron",
            "cron": "0 3 * * *",
            "timezone": "Europe/Riga",
            "dst_gap": "skip",
            "dst_overlap": "twice",
            "max_consecutive_job_failures_allowed": "7",
            "image": "busybox:latest",
            "command": "sh\r\n-c\r\n\r\n",
            "args": "echo a=b\n  two spaces",
            "env": "A=1\nB = x=y\n\n",
            "working_dir": "",
        }
    )
    request = form.create_request()
    assert isinstance(request, WorkflowCreate)
    assert (request.name, request.kind, request.interval) == ("box", "CONTAINER", None)
    assert (request.cron, request.timezone) == ("0 3 * * *", "Europe/Riga")
    assert request.dst is not None and (request.dst.gap, request.dst.overlap) == ("skip", "twice")
    assert request.max_consecutive_job_failures_allowed == 7
    assert request.payload == {
        "image": "busybox:latest",
        "command": ["sh", "-c"],
        "args": ["echo a=b", "  two spaces"],
        "env": {"A": "1", "B": "x=y"},
        "working_dir": None,
    }


def test_a_heartbeat_without_endpoint_is_a_liveness_job_unless_options_are_typed() -> None:
    liveness = WorkflowForm(name="l").create_request()
    assert liveness.payload == {} and liveness.interval == 5
    typed = WorkflowForm(name="l", headers="X-A: 1", expected_status_code="204").create_request()
    # Sent as typed: the API says the endpoint is then required.
    assert typed.payload == {"headers": {"X-A": "1"}, "expected_status_code": 204}
    check = WorkflowForm(name="c", endpoint="https://example.com", timeout_seconds="2.5")
    assert check.create_request().payload == {
        "endpoint": "https://example.com",
        "headers": {},
        "expected_status_code": 200,
        "timeout_seconds": 2.5,
    }


def test_numbers_that_do_not_parse_are_left_to_the_api_to_refuse() -> None:
    with pytest.raises(InvalidFieldsError) as refused:
        WorkflowForm(name="n", interval="five").create_request()
    assert [e.field for e in refused.value.errors] == ["interval"]


def test_unreadable_lines_are_named_with_the_requests_other_errors() -> None:
    with pytest.raises(InvalidFieldsError) as refused:
        WorkflowForm(name="", kind="CONTAINER", env="A=1\nno-separator").create_request()
    fields = {e.field: e.message for e in refused.value.errors}
    assert fields["payload.env"] == "line 2: write one KEY=VALUE a line"
    assert "name" in fields
