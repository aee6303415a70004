import pytest

from chronoverse.domain import WorkflowKind
from chronoverse.errors import InvalidFieldsError
from chronoverse.payloads import ContainerPayload, HeartbeatPayload, parse_payload


def fields(kind: WorkflowKind, raw: object) -> set[str]:
    with pytest.raises(InvalidFieldsError) as info:
        parse_payload(kind, raw)
    return {e.field for e in info.value.errors}


def test_empty_heartbeat_is_a_liveness_job_stored_as_empty() -> None:
    payload = parse_payload(WorkflowKind.HEARTBEAT, {})
    assert isinstance(payload, HeartbeatPayload) and payload.is_liveness
    assert payload.to_json() == {}
    assert parse_payload(WorkflowKind.HEARTBEAT, None).to_json() == {}


def test_a_json_string_payload_is_parsed() -> None:
    payload = parse_payload(
        WorkflowKind.CONTAINER, '{"image": "python:3.11-alpine", "args": ["-c"]}'
    )
    assert isinstance(payload, ContainerPayload)
    assert payload.image == "python:3.11-alpine"
    assert payload.to_json()["resources"] == {"memory_mb": 256, "cpus": 1.0, "pids": 256}


@pytest.mark.parametrize(
    "image",
    [
        "busybox",
        "local/busybox:latest",
        "registry.example.com:5000/team/app:v1.2",
        "ghcr.io/org/app@sha256:" + "a" * 64,
        "my_app-x.y:TAG_1",
    ],
)
def test_valid_image_references(image: str) -> None:
    assert parse_payload(WorkflowKind.CONTAINER, {"image": image}).to_json()["image"] == image


@pytest.mark.parametrize(
    "image", ["", "UPPER/case", "a b", "name:", ":tag", "x@sha256:short", "-lead"]
)
def test_invalid_image_references(image: str) -> None:
    assert fields(WorkflowKind.CONTAINER, {"image": image}) == {"payload.image"}


def test_types_are_strict() -> None:
    assert fields(WorkflowKind.CONTAINER, {"image": "x", "timeout_seconds": "10"}) == {
        "payload.timeout_seconds"
    }
    assert fields(WorkflowKind.CONTAINER, {"image": "x", "timeout_seconds": True}) == {
        "payload.timeout_seconds"
    }


def test_every_bad_field_is_reported_at_once() -> None:
    raw = {"image": "x", "network": "no such/net", "pull_policy": "maybe", "extra": 1}
    assert fields(WorkflowKind.CONTAINER, raw) == {
        "payload.network",
        "payload.pull_policy",
        "payload.extra",
    }


def test_nul_anywhere_names_its_path() -> None:
    assert fields(WorkflowKind.CONTAINER, {"image": "x", "env": {"A": "1\x00"}}) == {
        "payload.env.A"
    }
    assert fields(WorkflowKind.HEARTBEAT, {"endpoint": "http://a.b/\x00"}) == {"payload.endpoint"}


def test_payload_must_be_an_object() -> None:
    assert fields(WorkflowKind.HEARTBEAT, [1]) == {"payload"}
    assert fields(WorkflowKind.HEARTBEAT, "[1]") == {"payload"}
    assert fields(WorkflowKind.HEARTBEAT, "{") == {"payload"}


def test_oversized_payload() -> None:
    assert fields(WorkflowKind.CONTAINER, {"image": "x", "args": ["y" * 70000]}) == {"payload"}


def test_http_options_without_endpoint_name_the_endpoint() -> None:
    assert fields(WorkflowKind.HEARTBEAT, {"expected_status_code": 204}) == {"payload.endpoint"}


@pytest.mark.parametrize("working_dir", ["work", "/a/../b", "/a//b", "/proc/self", "/dev"])
def test_a_working_dir_is_absolute_normalised_and_not_a_kernel_path(working_dir: str) -> None:
    raw = {"image": "busybox", "working_dir": working_dir}
    assert fields(WorkflowKind.CONTAINER, raw) == {"payload.working_dir"}
