from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import pytest

from chronoverse.domain import BuildStatus, Workflow, WorkflowKind
from chronoverse.errors import ConflictError, InvalidFieldsError
from chronoverse.schedules import Catchup
from chronoverse.secrets import MASK, SecretBox, generate_key
from services.server.schemas import WorkflowUpdate
from services.server.store.pagination import decode_cursor, encode_cursor
from services.server.store.workflows import like_pattern, plan_schedule, plan_update

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
    assert (plan.name, plan.max_failures, plan.generation) == ("w", 3, 1)
    assert (plan.schedule.interval_minutes, plan.schedule.cron) == (9, None)
    assert plan.schedule.next_run_at is None  # an interval series goes on from its next slot


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


NOW_UTC = datetime(2027, 3, 27, 12, tzinfo=UTC)


def test_a_new_cron_schedule_starts_at_its_next_slot() -> None:
    plan = plan_schedule(
        WorkflowUpdate(cron="0 3 * * *", timezone="Europe/Riga"), workflow(), now=NOW_UTC
    )
    assert (plan.interval_minutes, plan.cron, plan.timezone) == (None, "0 3 * * *", "Europe/Riga")
    assert plan.next_run_at == datetime(2027, 3, 28, 1, tzinfo=UTC)  # 04:00 EEST, shifted


def test_changing_only_the_zone_keeps_the_expression_and_moves_the_next_slot() -> None:
    current = workflow(interval_minutes=None, cron="0 3 * * *", timezone="Europe/Riga")
    plan = plan_schedule(WorkflowUpdate(timezone="UTC"), current, now=NOW_UTC)
    assert (plan.cron, plan.timezone, plan.next_run_at) == (
        "0 3 * * *",
        "UTC",
        datetime(2027, 3, 28, 3, tzinfo=UTC),
    )
    unchanged = plan_schedule(WorkflowUpdate(name="x"), current, now=NOW_UTC)
    assert unchanged.next_run_at is None  # the same schedule: its series goes on


@pytest.mark.parametrize(
    ("update", "field"),
    [
        (WorkflowUpdate(timezone="Europe/Riga"), "timezone"),  # an interval workflow has no zone
        (WorkflowUpdate(interval=5, cron="@daily"), "cron"),
        (WorkflowUpdate(catchup_window_minutes=5), "catchup_window_minutes"),
    ],
)
def test_schedule_combinations_that_are_not_one(update: WorkflowUpdate, field: str) -> None:
    with pytest.raises(InvalidFieldsError) as info:
        plan_schedule(update, workflow(), now=NOW_UTC)
    assert [e.field for e in info.value.errors] == [field]


def test_catchup_all_keeps_its_window_until_the_mode_changes() -> None:
    plan = plan_schedule(
        WorkflowUpdate(catchup="all", catchup_window_minutes=15), workflow(), now=NOW_UTC
    )
    assert (plan.catchup.mode, plan.catchup.window_minutes) == (Catchup.ALL, 15)
    current = workflow(catchup=plan.catchup)
    assert plan_schedule(WorkflowUpdate(name="x"), current, now=NOW_UTC).catchup == plan.catchup
    latest = plan_schedule(WorkflowUpdate(catchup="latest"), current, now=NOW_UTC)
    assert (latest.catchup.mode, latest.catchup.window_minutes) == (Catchup.LATEST, None)
