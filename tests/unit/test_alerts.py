"""The pure decisions of chronoverse.alerts: which notifications, health flips and webhook events
each transition raises; and its queries file parses."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pglast
import pytest

from chronoverse import alerts
from chronoverse.alerts import (
    BuildMoved,
    Decision,
    EntityType,
    Event,
    Health,
    JobFinished,
    Kind,
    Preference,
    Terminated,
    WorkflowState,
)
from chronoverse.domain import BuildStatus, JobStatus
from chronoverse.sql import Queries

NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
URL = "https://chronoverse.example/"


def workflow(health: Health = Health.NEW, failures: int = 0) -> WorkflowState:
    return WorkflowState(
        id=uuid.uuid4(), user_id=uuid.uuid4(), name="nightly", health=health,
        consecutive_failures=failures,
    )  # fmt: skip


def finished(w: WorkflowState, status: JobStatus, **kw: object) -> JobFinished:
    return JobFinished(workflow=w, job_id=uuid.uuid4(), status=status, **kw)  # type: ignore[arg-type]


def events(decision: Decision) -> list[tuple[Kind, Event]]:
    return [(n.kind, n.event) for n in decision.notifications]


@pytest.mark.parametrize(
    ("transition", "expected"),
    [
        (lambda w: BuildMoved(workflow=w, generation=1, status=BuildStatus.STARTED),
         (Kind.INFO, Event.BUILD_STARTED)),
        (lambda w: BuildMoved(workflow=w, generation=1, status=BuildStatus.COMPLETED),
         (Kind.SUCCESS, Event.BUILD_COMPLETED)),
        (lambda w: BuildMoved(workflow=w, generation=1, status=BuildStatus.FAILED, error="no"),
         (Kind.ERROR, Event.BUILD_FAILED)),
        (lambda w: finished(w, JobStatus.CANCELED, error="terminated by the user"),
         (Kind.WARN, Event.JOB_CANCELED)),
        (lambda w: Terminated(workflow=w, reason="terminated by the user", by_user=True),
         (Kind.INFO, Event.WORKFLOW_TERMINATED)),
        (lambda w: Terminated(workflow=w, reason="terminated after 3", by_user=False),
         (Kind.ALERT, Event.WORKFLOW_TERMINATED)),
    ],
)  # fmt: skip
def test_each_event_has_its_kind(transition: object, expected: tuple[Kind, Event]) -> None:
    decision = alerts.decide(transition(workflow()), public_url=URL, now=NOW)  # type: ignore[operator]
    assert events(decision) == [expected]
    assert decision.health is None


def test_job_completed_and_failed_kinds() -> None:
    passing = workflow(Health.PASSING)
    done = alerts.decide(finished(passing, JobStatus.COMPLETED), public_url=URL, now=NOW)
    assert events(done) == [(Kind.SUCCESS, Event.JOB_COMPLETED)]
    failing = workflow(Health.FAILING, failures=2)
    failed = alerts.decide(
        finished(failing, JobStatus.FAILED, error="exit 1", exit_code=1), public_url=URL, now=NOW
    )
    assert events(failed) == [(Kind.ERROR, Event.JOB_FAILED)]
    assert "exit code 1" in failed.notifications[0].message


@pytest.mark.parametrize("before", [Health.NEW, Health.PASSING])
def test_first_failure_after_success_or_creation_flips_to_failing(before: Health) -> None:
    w = workflow(before)
    job = finished(w, JobStatus.FAILED, error="boom", exit_code=2, consecutive_failures=1)
    decision = alerts.decide(job, public_url=URL, now=NOW)
    assert decision.health is Health.FAILING
    assert events(decision) == [
        (Kind.ERROR, Event.JOB_FAILED),
        (Kind.ERROR, Event.WORKFLOW_FAILING),
    ]
    flip = decision.notifications[1]
    assert flip.entity_type is EntityType.WORKFLOW and flip.entity_id == w.id
    assert flip.dedup_key == f"workflow.failing:{job.job_id}"
    assert flip.action_url == f"/ui/workflows/{w.id}/jobs/{job.job_id}"
    (hook,) = decision.webhooks
    assert hook.event is Event.WORKFLOW_FAILING
    assert hook.payload == {
        "type": "workflow.failing",
        "timestamp": NOW.isoformat(),
        "data": {
            "workflow_id": str(w.id),
            "workflow_name": "nightly",
            "job_id": str(job.job_id),
            "status": "FAILED",
            "error": "boom",
            "consecutive_failures": 1,
            "url": f"https://chronoverse.example/ui/workflows/{w.id}/jobs/{job.job_id}",
        },
    }


def test_first_success_after_failures_recovers() -> None:
    w = workflow(Health.FAILING, failures=2)
    job = finished(w, JobStatus.COMPLETED, consecutive_failures=2)
    decision = alerts.decide(job, public_url=URL, now=NOW)
    assert decision.health is Health.PASSING
    assert events(decision) == [
        (Kind.SUCCESS, Event.JOB_COMPLETED),
        (Kind.SUCCESS, Event.WORKFLOW_RECOVERED),
    ]
    (hook,) = decision.webhooks
    assert hook.event is Event.WORKFLOW_RECOVERED
    assert hook.payload["data"]["consecutive_failures"] == 2
    assert hook.payload["data"]["status"] == "COMPLETED"


def test_new_to_passing_and_repeats_alert_nothing() -> None:
    first = alerts.decide(finished(workflow(), JobStatus.COMPLETED), public_url=URL, now=NOW)
    assert first.health is Health.PASSING and not first.webhooks
    again = alerts.decide(
        finished(workflow(Health.PASSING), JobStatus.COMPLETED), public_url=URL, now=NOW
    )
    assert again.health is None and not again.webhooks
    still = alerts.decide(
        finished(workflow(Health.FAILING), JobStatus.FAILED), public_url=URL, now=NOW
    )
    assert still.health is None and not still.webhooks


def test_a_batch_threads_health_through_jobs_of_one_workflow() -> None:
    w = workflow(Health.FAILING, failures=3)
    jobs = [finished(w, JobStatus.COMPLETED, consecutive_failures=3) for _ in range(3)]
    decisions = alerts.decide_all(jobs, public_url=URL, now=NOW)
    assert [len(d.webhooks) for d in decisions] == [1, 0, 0]
    assert [d.health for d in decisions] == [Health.PASSING, None, None]


@pytest.mark.parametrize(
    ("before", "status"),
    [
        (Health.FAILING, JobStatus.COMPLETED),
        (Health.NEW, JobStatus.COMPLETED),
        (Health.PASSING, JobStatus.FAILED),
        (Health.NEW, JobStatus.FAILED),
    ],
)
def test_a_terminated_workflow_flips_no_more(before: Health, status: JobStatus) -> None:
    """A job that ran while its workflow was terminated: its own notification, no flip (no
    workflow.recovered after workflow.terminated), no webhook."""
    job = finished(workflow(before, failures=2), status, workflow_terminated=True)
    decision = alerts.decide(job, public_url=URL, now=NOW)
    assert decision.health is None and decision.webhooks == ()
    own = Event.JOB_COMPLETED if status is JobStatus.COMPLETED else Event.JOB_FAILED
    assert [e for _, e in events(decision)] == [own]
    # In a batch, the jobs after it see the health it left: still no flip.
    batch = alerts.decide_all([job, job], public_url=URL, now=NOW)
    assert [(d.health, d.webhooks) for d in batch] == [(None, ()), (None, ())]


def test_a_liveness_success_stores_nothing_but_its_flip() -> None:
    w = workflow(Health.FAILING, failures=1)
    recovered = alerts.decide(
        finished(w, JobStatus.COMPLETED, liveness=True, consecutive_failures=1),
        public_url=URL,
        now=NOW,
    )
    assert events(recovered) == [(Kind.SUCCESS, Event.WORKFLOW_RECOVERED)]
    assert recovered.health is Health.PASSING and len(recovered.webhooks) == 1
    for before in (Health.NEW, Health.PASSING):
        beat = finished(workflow(before), JobStatus.COMPLETED, liveness=True)
        assert alerts.decide(beat, public_url=URL, now=NOW).notifications == ()
    failed = alerts.decide(
        finished(workflow(Health.PASSING), JobStatus.FAILED, liveness=True),
        public_url=URL,
        now=NOW,
    )
    assert [e for _, e in events(failed)] == [Event.JOB_FAILED, Event.WORKFLOW_FAILING]


def test_terminated_and_build_failed_are_webhook_events() -> None:
    w = workflow(Health.FAILING, failures=3)
    auto = alerts.decide(
        Terminated(workflow=w, reason="terminated after 3 consecutive failed jobs", by_user=False),
        public_url=URL,
        now=NOW,
    )
    (hook,) = auto.webhooks
    assert hook.event is Event.WORKFLOW_TERMINATED
    assert hook.dedup_key == f"workflow.terminated:{w.id}"
    assert hook.payload["data"]["error"] == "terminated after 3 consecutive failed jobs"
    assert hook.payload["data"]["job_id"] is None
    assert "3 failed jobs" in auto.notifications[0].message
    built = alerts.decide(
        BuildMoved(workflow=w, generation=4, status=BuildStatus.FAILED, error="no such image"),
        public_url=URL,
        now=NOW,
    )
    assert [h.event for h in built.webhooks] == [Event.BUILD_FAILED]
    assert built.notifications[0].dedup_key == f"build.failed:{w.id}:4"
    for status in (BuildStatus.STARTED, BuildStatus.COMPLETED):
        moved = BuildMoved(workflow=w, generation=4, status=status)
        assert not alerts.decide(moved, public_url=URL, now=NOW).webhooks


def test_only_final_statuses_are_outcomes() -> None:
    with pytest.raises(ValueError, match="final"):
        alerts.decide(finished(workflow(), JobStatus.PENDING), public_url=URL, now=NOW)


def test_long_errors_are_cut_in_messages_not_in_payloads() -> None:
    error = "x" * 5000
    decision = alerts.decide(
        finished(workflow(), JobStatus.FAILED, error=error), public_url=URL, now=NOW
    )
    assert all(len(n.message) < 700 for n in decision.notifications)
    assert decision.webhooks[0].payload["data"]["error"] == error


def test_preferences() -> None:
    assert alerts.shown_kinds(Preference.ALL) is None
    assert alerts.shown_kinds(Preference.NONE) == ((), ())
    assert alerts.shown_kinds(Preference.ALERTS) == (
        (Kind.ALERT, Kind.ERROR, Kind.WARN),
        (Event.WORKFLOW_RECOVERED,),
    )


def test_alerts_queries_parse() -> None:
    queries = Queries.load(Path(alerts.__file__).with_name("alerts.sql"))
    assert set(queries) == {"insert_notifications", "set_health", "enqueue_webhook_deliveries"}
    for name in queries:
        counter = iter(range(1, 1000))
        text = re.sub(r"%\((\w+)\)[sb]", lambda _, c=counter: f"${next(c)}", queries[name])
        assert len(pglast.parse_sql(text)) == 1, name
