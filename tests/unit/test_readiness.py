"""Readiness of a consumer: a member that holds no partition for too long is not ready."""

from __future__ import annotations

import logging

import pytest
from prometheus_client import REGISTRY

from chronoverse.checks import assignment_check
from chronoverse.health import run_checks
from chronoverse.kafka.assignment import AssignmentWatch, assignment_problem
from chronoverse.settings import KafkaSettings


def problem(
    *, assigned: int = 0, unassigned_s: float = 95.0, topic_partitions: int | None = 1
) -> str | None:
    return assignment_problem(
        group="chronoverse-log-processor",
        assigned=assigned,
        unassigned_s=unassigned_s,
        topic_partitions=topic_partitions,
        timeout_s=30.0,
    )


def test_a_member_without_partitions_for_too_long_is_not_ready_and_says_why() -> None:
    assert problem() == (
        "no partitions assigned for 95 s (group chronoverse-log-processor; its topics have 1 "
        "partitions)"
    )
    assert problem(topic_partitions=None) == (
        "no partitions assigned for 95 s (group chronoverse-log-processor)"
    )


@pytest.mark.parametrize(
    "case",
    [
        {"assigned": 2},  # holds partitions
        {"unassigned_s": 30.0},  # not for longer than the timeout yet
        {"unassigned_s": 0.0},
        {"topic_partitions": 0},  # nothing to assign: the kafka check reports missing topics
    ],
)
def test_other_members_are_ready(case: dict[str, float]) -> None:
    assert problem(**case) is None  # type: ignore[arg-type]


def test_the_timeout_is_three_session_timeouts() -> None:
    settings = KafkaSettings(kafka_session_timeout_ms=6000)
    assert settings.kafka_assignment_timeout_s == 18.0
    assert AssignmentWatch.for_group(settings, "g").timeout_s == 18.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def gauge(group: str) -> float | None:
    return REGISTRY.get_sample_value("chronoverse_kafka_assigned_partitions", {"group": group})


def test_the_watch_follows_assignments_and_the_probe_reads_it() -> None:
    clock = Clock()
    watch = AssignmentWatch("unit-watch", timeout_s=18.0, clock=clock)
    check = assignment_check(watch)
    watch.set_topic_partitions(2)
    assert gauge("unit-watch") == 0

    clock.now += 18.0
    assert run_checks([check]) == (True, {"kafka_assignment": "ok"})
    clock.now += 1.0
    ready, results = run_checks([check])
    assert not ready
    assert results["kafka_assignment"] == (
        "error: no partitions assigned for 19 s (group unit-watch; its topics have 2 partitions)"
    )

    watch.assign([("jobs", 0), ("jobs", 1)])
    assert gauge("unit-watch") == 2
    assert watch.unassigned_s == 0.0
    clock.now += 100.0
    assert run_checks([check])[0]

    # A rebalance takes the partitions away: the clock starts again from then.
    watch.revoke([("jobs", 0)])
    assert gauge("unit-watch") == 1
    watch.revoke([("jobs", 1)])
    assert gauge("unit-watch") == 0
    clock.now += 10.0
    assert watch.unassigned_s == 10.0
    assert watch.problem() is None
    clock.now += 10.0
    assert watch.problem() is not None

    watch.restart()
    assert watch.unassigned_s == 0.0


def test_the_loop_logs_once_per_change_not_per_look(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    watch = AssignmentWatch("unit-report", timeout_s=18.0, clock=clock)
    caplog.set_level(logging.INFO, logger="chronoverse.kafka.assignment")

    def actions() -> list[tuple[int, str]]:
        return [(r.levelno, getattr(r, "action", "")) for r in caplog.records]

    for _ in range(3):
        watch.report()
    assert actions() == []
    clock.now += 20.0
    for _ in range(3):
        watch.report()
    assert actions() == [(logging.ERROR, "consumer_unassigned")]
    assert "no partitions assigned for 20 s (group unit-report)" in caplog.records[0].message

    watch.assign([("jobs", 0)])
    for _ in range(3):
        watch.report()
    assert actions() == [
        (logging.ERROR, "consumer_unassigned"),
        (logging.INFO, "consumer_assigned_again"),
    ]
