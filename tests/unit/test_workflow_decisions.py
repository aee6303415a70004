from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import pytest

from chronoverse.domain import BuildStatus, Workflow, WorkflowKind
from chronoverse.errors import ConflictError, InvalidFieldsError
from chronoverse.secrets import MASK, SecretBox, generate_key
from services.server.schemas import WorkflowUpdate
from services.server.store.pagination import decode_cursor, encode_cursor
from services.server.store.workflows import like_pattern, plan_update

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
BOX = SecretBox([generate_key()])


def workflow(kind: WorkflowKind = WorkflowKind.CONTAINER, **changes: Any) -> Workflow:
    values: dict[str, Any] = dict(
        id=uuid4(),
        user_id=uuid4(),
        name="w",
        kind=kind,
        payload={"image": "busybox"} if kind is WorkflowKind.CONTAINER else {},
        interval_minutes=5,
        max_consecutive_job_failures_allowed=3,
        consecutive_job_failures_count=0,
        build_status=BuildStatus.COMPLETED,
        build_error=None,
        generation=1,
        next_run_at=None,
        created_at=NOW,
        updated_at=NOW,
        terminated_at=None,
        terminated_reason=None,
    )
    values.update(changes)
    return Workflow(**values)


def test_a_new_container_payload_rebuilds_a_new_generation() -> None:
    plan = plan_update(workflow(), WorkflowUpdate(payload={"image": "python:3.11"}), secrets=BOX)
    assert (plan.generation, plan.build_status) == (2, BuildStatus.QUEUED)
    assert plan.payload["image"] == "python:3.11"


def test_the_same_payload_changes_nothing() -> None:
    current = workflow()
    current = workflow(
        payload=plan_update(
            current, WorkflowUpdate(payload={"image": "busybox"}), secrets=BOX
        ).payload
    )
    plan = plan_update(current, WorkflowUpdate(payload={"image": "busybox"}), secrets=BOX)
    assert (plan.generation, plan.build_status) == (1, BuildStatus.COMPLETED)


def test_a_heartbeat_payload_change_needs_no_rebuild() -> None:
    plan = plan_update(
        workflow(WorkflowKind.HEARTBEAT),
        WorkflowUpdate(payload={"endpoint": "http://x.y"}),
        secrets=BOX,
    )
    assert (plan.generation, plan.build_status) == (2, BuildStatus.COMPLETED)


def test_other_fields_keep_their_values() -> None:
    plan = plan_update(workflow(), WorkflowUpdate(interval=9), secrets=BOX)
    assert (plan.name, plan.interval_minutes, plan.max_failures, plan.generation) == ("w", 9, 3, 1)


def test_terminated_is_final() -> None:
    with pytest.raises(ConflictError):
        plan_update(
            workflow(terminated_at=NOW, terminated_reason="x"),
            WorkflowUpdate(name="n"),
            secrets=BOX,
        )


def test_an_empty_update_is_refused() -> None:
    with pytest.raises(InvalidFieldsError):
        plan_update(workflow(), WorkflowUpdate(), secrets=BOX)


def test_secret_values_compare_in_plain() -> None:
    first = WorkflowUpdate(payload={"image": "busybox", "env": {"TOKEN": "s3cret"}})
    sealed = plan_update(workflow(), first, secrets=BOX).payload
    assert BOX.open(sealed["env"]["TOKEN"]) == "s3cret"
    current = workflow(payload=sealed)
    for env in ({"TOKEN": MASK}, {"TOKEN": "s3cret"}):
        plan = plan_update(
            current, WorkflowUpdate(payload={"image": "busybox", "env": env}), secrets=BOX
        )
        # Unchanged: the stored ciphertext stays, no rebuild.
        assert (plan.payload, plan.generation, plan.build_status) == (
            sealed,
            1,
            BuildStatus.COMPLETED,
        )
    plan = plan_update(
        current, WorkflowUpdate(payload={"image": "busybox", "env": {"TOKEN": "new"}}), secrets=BOX
    )
    assert (plan.generation, plan.build_status) == (2, BuildStatus.QUEUED)
    assert BOX.open(plan.payload["env"]["TOKEN"]) == "new"


def test_a_mask_for_an_unknown_key_is_refused() -> None:
    current = workflow(payload={"image": "busybox", "env": {"A": BOX.seal("a")}})
    with pytest.raises(InvalidFieldsError, match=r"payload\.env\.B"):
        plan_update(
            current, WorkflowUpdate(payload={"image": "busybox", "env": {"B": MASK}}), secrets=BOX
        )


def test_cursor_round_trip_and_garbage() -> None:
    workflow_id = uuid4()
    assert decode_cursor(encode_cursor(NOW, workflow_id)) == (NOW, workflow_id)
    for garbage in ["", "!!!", "W10", encode_cursor(NOW, workflow_id)[:-3]]:
        with pytest.raises(InvalidFieldsError):
            decode_cursor(garbage)


def test_like_pattern_escapes_wildcards() -> None:
    assert like_pattern("100%_a\\b") == "%100\\%\\_a\\\\b%"
