"""Notifications, health flips and the webhook outbox, written by the real JobStore, lifecycle and
builder against real Postgres; and the routes that list and mark them, over HTTP and gRPC."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, LiteralString
from uuid import UUID

import docker
import grpc
import httpx
import psycopg
import pytest
import redis
from psycopg.rows import dict_row

from chronoverse import alerts
from chronoverse.definition_cache import DefinitionCache
from chronoverse.domain import BuildStatus, FailureKind, JobStatus, WorkflowKind
from chronoverse.events import WorkflowEvent, WorkflowEventType
from chronoverse.payloads import ContainerPolicy
from chronoverse.postgres import Pool, create_pool
from chronoverse.scheduling import RetryPolicy, RunResult, decide_outcome
from chronoverse.secrets import SecretBox, generate_key, seal_payload
from chronoverse.settings import PostgresSettings
from chronoverse.v1 import notifications_pb2, notifications_pb2_grpc
from services.execution_worker.store import Claim, JobStore
from services.server.store import notifications as notification_store
from services.server.store import workflows as workflow_store
from services.workflow_worker.builds import Builder
from services.workflow_worker.images import Images
from tests.factories import make_user, make_workflow
from tests.integration.conftest import RunningServer, new_user
from tests.integration.test_cli import Cli

pytestmark = pytest.mark.integration

PUBLIC_URL = "https://chronoverse.example"
POLICY = RetryPolicy(max_attempts=1, base_delay_s=0, max_delay_s=0)
BOX = SecretBox([generate_key()])
# An HTTP-check HEARTBEAT (make_workflow's default, an empty payload, is a liveness one). The jobs
# here are recorded, never run: nothing is ever sent to it.
HTTP_CHECK = {"endpoint": "http://127.0.0.1:9/health"}
Conn = psycopg.Connection[dict[str, Any]]


@pytest.fixture
def pool(database_url: str) -> Iterator[Pool]:
    pool = create_pool(PostgresSettings(database_url=database_url), name="test")
    yield pool
    pool.close()


@pytest.fixture
def conn(database_url: str) -> Iterator[Conn]:
    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as conn:
        yield conn


@pytest.fixture
def store(pool: Pool) -> JobStore:
    return JobStore(pool, owner="test-worker", lease_s=30, public_url=PUBLIC_URL)


def queue_job(conn: Conn, workflow_id: UUID) -> UUID:
    row = conn.execute(
        "INSERT INTO jobs (workflow_id, user_id, trigger, scheduled_at, status, queued_at) "
        "SELECT id, user_id, 'MANUAL', now(), 'QUEUED', now() FROM workflows WHERE id = %s "
        "RETURNING id",
        (workflow_id,),
    ).fetchone()
    assert row is not None
    return UUID(str(row["id"]))


def run_job(store: JobStore, conn: Conn, workflow_id: UUID, *, ok: bool) -> UUID:
    """One job of the workflow, claimed and recorded by the real store."""
    job_id = queue_job(conn, workflow_id)
    [claim] = store.claim([job_id])
    result = RunResult(
        succeeded=ok,
        exit_code=0 if ok else 3,
        error=None if ok else "exit status 3",
        failure_kind=None if ok else FailureKind.USER,
    )
    outcome = decide_outcome(result, attempt=1, policy=POLICY, now=datetime.now(UTC))
    assert store.record(job_id, claim.lease_token, outcome).written
    return job_id


def webhook(conn: Conn, user_id: UUID, events: list[str], workflow_id: UUID | None = None) -> UUID:
    row = conn.execute(
        "INSERT INTO webhooks (user_id, workflow_id, url, events, secret) "
        "VALUES (%s, %s, 'https://hooks.example/in', %s, 'whsec_test') RETURNING id",
        (user_id, workflow_id, events),
    ).fetchone()
    assert row is not None
    return UUID(str(row["id"]))


def notes(conn: Conn, user_id: UUID, event: str | None = None) -> list[dict[str, Any]]:
    return conn.execute(
        "SELECT * FROM notifications WHERE user_id = %s AND (%s::text IS NULL OR event = %s) "
        "ORDER BY created_at, id",
        (user_id, event, event),
    ).fetchall()


def deliveries(conn: Conn, webhook_id: UUID) -> list[dict[str, Any]]:
    return conn.execute(
        "SELECT * FROM webhook_deliveries WHERE webhook_id = %s ORDER BY created_at",
        (webhook_id,),
    ).fetchall()


def health(conn: Conn, workflow_id: UUID) -> str:
    row = conn.execute("SELECT health FROM workflows WHERE id = %s", (workflow_id,)).fetchone()
    assert row is not None
    return str(row["health"])


# --- what the transitions write -------------------------------------------------------------------


def test_flips_alert_once_and_fill_the_outbox(conn: Conn, store: JobStore) -> None:
    user_id = make_user(conn)
    workflow_id = make_workflow(conn, user_id, payload=HTTP_CHECK, max_failures=10)
    other = make_workflow(conn, user_id)
    every = webhook(conn, user_id, ["workflow.failing", "workflow.recovered"])
    scoped = webhook(conn, user_id, ["workflow.failing"], workflow_id=workflow_id)
    elsewhere = webhook(conn, user_id, ["workflow.failing"], workflow_id=other)
    unsubscribed = webhook(conn, user_id, ["build.failed"])
    strangers = webhook(conn, make_user(conn), ["workflow.failing", "workflow.recovered"])

    first = run_job(store, conn, workflow_id, ok=False)
    run_job(store, conn, workflow_id, ok=False)

    assert health(conn, workflow_id) == "FAILING"
    [failing] = notes(conn, user_id, "workflow.failing")
    assert (failing["kind"], failing["entity_type"], failing["entity_id"]) == (
        "ERROR",
        "WORKFLOW",
        workflow_id,
    )
    assert failing["dedup_key"] == f"workflow.failing:{first}"
    assert failing["action_url"] == f"/ui/workflows/{workflow_id}/jobs/{first}"
    assert len(notes(conn, user_id, "job.failed")) == 2
    [delivery] = deliveries(conn, every)
    assert delivery["event"] == "workflow.failing" and delivery["status"] == "PENDING"
    assert delivery["payload"] == {
        "type": "workflow.failing",
        "timestamp": delivery["payload"]["timestamp"],
        "data": {
            "workflow_id": str(workflow_id),
            "workflow_name": "w",
            "job_id": str(first),
            "status": "FAILED",
            "error": "exit status 3",
            "consecutive_failures": 1,
            "url": f"{PUBLIC_URL}/ui/workflows/{workflow_id}/jobs/{first}",
        },
    }
    datetime.fromisoformat(delivery["payload"]["timestamp"])
    assert len(deliveries(conn, scoped)) == 1
    for untouched in (elsewhere, unsubscribed, strangers):
        assert deliveries(conn, untouched) == []

    recovered_by = run_job(store, conn, workflow_id, ok=True)
    run_job(store, conn, workflow_id, ok=True)
    run_job(store, conn, workflow_id, ok=True)

    assert health(conn, workflow_id) == "PASSING"
    [recovered] = notes(conn, user_id, "workflow.recovered")
    assert recovered["kind"] == "SUCCESS"
    assert recovered["dedup_key"] == f"workflow.recovered:{recovered_by}"
    assert [d["event"] for d in deliveries(conn, every)] == [
        "workflow.failing",
        "workflow.recovered",
    ]
    assert deliveries(conn, every)[1]["payload"]["data"]["consecutive_failures"] == 2
    assert len(deliveries(conn, scoped)) == 1  # not subscribed to recovered
    assert len(notes(conn, user_id, "job.completed")) == 3
    assert len(notes(conn, user_id, "workflow.failing")) == 1


def test_a_new_workflow_s_first_success_alerts_nothing(conn: Conn, store: JobStore) -> None:
    user_id = make_user(conn)
    workflow_id = make_workflow(conn, user_id, payload=HTTP_CHECK)
    hook = webhook(conn, user_id, sorted(e.value for e in alerts.WEBHOOK_EVENTS))
    run_job(store, conn, workflow_id, ok=True)
    assert health(conn, workflow_id) == "PASSING"
    assert [n["event"] for n in notes(conn, user_id)] == ["job.completed"]
    assert deliveries(conn, hook) == []


def test_a_liveness_beat_stores_no_job_completed(conn: Conn, store: JobStore) -> None:
    user_id = make_user(conn)
    liveness = make_workflow(conn, user_id, max_failures=10)
    container = make_workflow(conn, user_id, kind="CONTAINER", payload={"image": "alpine:3.20"})
    hook = webhook(conn, user_id, ["workflow.recovered"])
    run_job(store, conn, liveness, ok=True)  # the single-outcome path
    assert (health(conn, liveness), notes(conn, user_id)) == ("PASSING", [])
    # Its failure, and the recovery after it, are told as for any job.
    run_job(store, conn, liveness, ok=False)
    run_job(store, conn, liveness, ok=True)
    assert [n["event"] for n in notes(conn, user_id)] == [
        "job.failed",
        "workflow.failing",
        "workflow.recovered",
    ]
    assert len(deliveries(conn, hook)) == 1
    # A CONTAINER job's success is stored.
    done = run_job(store, conn, container, ok=True)
    assert [n["entity_id"] for n in notes(conn, user_id, "job.completed")] == [done]


def test_the_batch_path_flips_too(conn: Conn, store: JobStore) -> None:
    user_id = make_user(conn)
    failing = make_workflow(conn, user_id, max_failures=10)
    fresh = make_workflow(conn, user_id)
    hook = webhook(conn, user_id, ["workflow.recovered"])
    run_job(store, conn, failing, ok=False)
    jobs = [queue_job(conn, failing) for _ in range(3)] + [queue_job(conn, fresh)]
    claims = store.claim(jobs, liveness_only=True)
    assert len(claims) == 4

    assert len(store.complete(claims)) == 4

    assert (health(conn, failing), health(conn, fresh)) == ("PASSING", "PASSING")
    assert len(notes(conn, user_id, "workflow.recovered")) == 1
    assert notes(conn, user_id, "job.completed") == []  # liveness beats: no news
    [delivery] = deliveries(conn, hook)
    assert delivery["payload"]["data"]["consecutive_failures"] == 1
    # Completing the same claims again (a retried transaction) writes nothing more.
    assert store.complete(claims) == []
    assert len(notes(conn, user_id)) == 1 + 1 + 1


def terminate_failing_while_running(
    conn: Conn, store: JobStore, database_url: str, *, liveness: bool
) -> tuple[UUID, UUID, Claim]:
    """A FAILING workflow with a webhook on recovery, terminated by its owner while one of its
    jobs runs: the user, the webhook and the running job's claim."""
    user_id = make_user(conn)
    workflow_id = make_workflow(conn, user_id, payload=None if liveness else HTTP_CHECK)
    hook = webhook(conn, user_id, ["workflow.recovered", "workflow.terminated"])
    run_job(store, conn, workflow_id, ok=False)
    assert health(conn, workflow_id) == "FAILING"
    [claim] = store.claim([queue_job(conn, workflow_id)], liveness_only=liveness)
    with psycopg.connect(database_url, row_factory=dict_row) as tx:
        workflow_store.terminate(tx, user_id, workflow_id, public_url=PUBLIC_URL)
    return user_id, hook, claim


def assert_no_recovery_after_termination(conn: Conn, user_id: UUID, hook: UUID) -> None:
    [workflow_id] = {n["entity_id"] for n in notes(conn, user_id, "workflow.terminated")}
    assert health(conn, workflow_id) == "FAILING"
    assert notes(conn, user_id, "workflow.recovered") == []
    assert [d["event"] for d in deliveries(conn, hook)] == ["workflow.terminated"]
    assert [n["event"] for n in notes(conn, user_id)][-1] != "workflow.recovered"


def test_a_terminated_workflow_does_not_recover(
    conn: Conn, store: JobStore, database_url: str
) -> None:
    user_id, hook, claim = terminate_failing_while_running(
        conn, store, database_url, liveness=False
    )
    ok = decide_outcome(
        RunResult(succeeded=True, exit_code=0), attempt=1, policy=POLICY, now=datetime.now(UTC)
    )
    recorded = store.record(claim.job_id, claim.lease_token, ok)
    assert recorded.written and recorded.outcome.status is JobStatus.COMPLETED  # a success stays
    assert [n["entity_id"] for n in notes(conn, user_id, "job.completed")] == [claim.job_id]
    assert_no_recovery_after_termination(conn, user_id, hook)


def test_a_terminated_workflow_does_not_recover_on_the_batch_path(
    conn: Conn, store: JobStore, database_url: str
) -> None:
    user_id, hook, claim = terminate_failing_while_running(conn, store, database_url, liveness=True)
    assert len(store.complete([claim])) == 1
    assert_no_recovery_after_termination(conn, user_id, hook)


def test_auto_termination_is_an_alert_with_its_reason(conn: Conn, store: JobStore) -> None:
    user_id = make_user(conn)
    workflow_id = make_workflow(conn, user_id, max_failures=2)
    hook = webhook(conn, user_id, ["workflow.terminated"])
    run_job(store, conn, workflow_id, ok=False)
    run_job(store, conn, workflow_id, ok=False)

    [terminated] = notes(conn, user_id, "workflow.terminated")
    assert terminated["kind"] == "ALERT"
    assert terminated["title"] == "Workflow auto-terminated"
    assert "2 failed jobs" in terminated["message"]
    [delivery] = deliveries(conn, hook)
    data = delivery["payload"]["data"]
    assert data["status"] == "TERMINATED" and data["consecutive_failures"] == 2
    assert data["error"].startswith("terminated after 2 consecutive failed jobs")
    assert data["url"] == f"{PUBLIC_URL}/ui/workflows/{workflow_id}"
    # Newest first, the termination comes after the failure that caused it.
    events = [n["event"] for n in notes(conn, user_id)]
    assert events[-2:] == ["job.failed", "workflow.terminated"]


def test_a_job_of_a_terminated_workflow_is_canceled_with_a_warning(
    conn: Conn, store: JobStore, database_url: str
) -> None:
    user_id = make_user(conn)
    workflow_id = make_workflow(conn, user_id)
    job_id = queue_job(conn, workflow_id)
    [claim] = store.claim([job_id])
    with psycopg.connect(database_url, row_factory=dict_row) as tx:
        workflow_store.terminate(tx, user_id, workflow_id, public_url=PUBLIC_URL)
    # Its container was stopped: it failed, which a terminated workflow's job is not.
    done = decide_outcome(
        RunResult(succeeded=False, exit_code=137, error="killed", failure_kind=FailureKind.USER),
        attempt=1,
        policy=POLICY,
        now=datetime.now(UTC),
    )
    assert store.record(job_id, claim.lease_token, done).written

    by_event = {n["event"]: n for n in notes(conn, user_id)}
    assert by_event["job.canceled"]["kind"] == "WARN"
    assert by_event["job.canceled"]["entity_type"] == "JOB"
    assert by_event["job.canceled"]["entity_id"] == job_id
    assert (by_event["workflow.terminated"]["kind"], by_event["workflow.terminated"]["title"]) == (
        "INFO",
        "Workflow terminated",
    )


def test_deleting_a_workflow_tells_nobody(conn: Conn, database_url: str) -> None:
    user_id = make_user(conn)
    workflow_id = make_workflow(conn, user_id)
    with psycopg.connect(database_url, row_factory=dict_row) as tx:
        workflow_store.delete(tx, user_id, workflow_id)
    assert notes(conn, user_id) == []


def test_one_event_written_twice_gives_one_notification(conn: Conn, database_url: str) -> None:
    user_id = make_user(conn)
    workflow_id = make_workflow(conn, user_id)
    hook = webhook(conn, user_id, ["workflow.failing"])
    state = alerts.WorkflowState(
        id=workflow_id, user_id=user_id, name="w", health=alerts.Health.NEW, consecutive_failures=1
    )
    failed = alerts.JobFinished(
        workflow=state, job_id=uuid.uuid4(), status=JobStatus.FAILED, error="boom"
    )
    decision = alerts.decide(failed, public_url=PUBLIC_URL, now=datetime.now(UTC))
    for _ in range(2):
        with psycopg.connect(database_url, row_factory=dict_row) as tx:
            alerts.write(tx, [decision])
    assert sorted(n["event"] for n in notes(conn, user_id)) == ["job.failed", "workflow.failing"]
    assert len(deliveries(conn, hook)) == 1


def test_builds_raise_their_notifications(
    conn: Conn,
    pool: Pool,
    docker_client: docker.DockerClient,
    redis_client: redis.Redis,
) -> None:
    builder = Builder(
        pool,
        Images(docker_client, redis_client),
        docker_client,
        DefinitionCache(redis_client, BOX, ttl_s=600),
        secrets=BOX,
        policy=ContainerPolicy(),
        installation=f"test-{uuid.uuid4().hex[:8]}",
        public_url=PUBLIC_URL,
    )
    user_id = make_user(conn)
    hook = webhook(conn, user_id, ["build.failed"])
    heartbeat = make_workflow(conn, user_id, build_status="QUEUED")
    # Nothing listens on the registry's address: the pull fails at once, on this machine.
    payload = seal_payload(
        BOX,
        WorkflowKind.CONTAINER,
        {"image": "127.0.0.1:1/none:latest", "pull_policy": "always", "command": ["true"]},
        None,
    )
    container = make_workflow(
        conn, user_id, kind="CONTAINER", build_status="QUEUED", payload=payload
    )
    for workflow_id, kind in (
        (heartbeat, WorkflowKind.HEARTBEAT),
        (container, WorkflowKind.CONTAINER),
    ):
        event = WorkflowEvent(
            type=WorkflowEventType.CREATED,
            workflow_id=workflow_id,
            user_id=user_id,
            kind=kind,
            generation=1,
        )
        builder.apply(event)
        builder.apply(event)  # redelivered: nothing twice

    found = [(n["entity_id"], n["event"], n["kind"]) for n in notes(conn, user_id)]
    assert found == [
        (heartbeat, "build.completed", "SUCCESS"),
        (container, "build.started", "INFO"),
        (container, "build.failed", "ERROR"),
    ]
    [delivery] = deliveries(conn, hook)
    assert delivery["dedup_key"] == f"build.failed:{container}:1"
    assert delivery["payload"]["data"]["status"] == "FAILED"
    assert delivery["payload"]["data"]["error"]


def plan_nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from plan_nodes(child)


def explain(conn: Conn, options: LiteralString, query: LiteralString, params: Any) -> list[Any]:
    """The nodes of the query's plan (EXPLAIN with ``options``)."""
    row = conn.execute("EXPLAIN (" + options + ", FORMAT JSON) " + query, params).fetchone()
    assert row is not None
    [plan] = row.values()
    return list(plan_nodes(plan[0]["Plan"]))


def test_the_alerts_preference_reads_no_hidden_row(conn: Conn, database_url: str) -> None:
    """Most stored notifications are SUCCESS and INFO that ALERTS hides: a page, the unread badge
    and "mark all read" go straight to the shown ones, on their partial indexes."""
    user_id = make_user(conn)
    conn.execute(
        "INSERT INTO notifications (user_id, kind, event, title, message, entity_type, "
        "entity_id, dedup_key, created_at) "
        "SELECT %s, 'SUCCESS', 'job.completed', 't', 'm', 'JOB', gen_random_uuid(), "
        "'hidden:' || i, now() - i * interval '1 second' FROM generate_series(1, 20000) AS i",
        (user_id,),
    )
    # One of each kind and event: which ALERTS shows is chronoverse.alerts' rule.
    pairs = [(k, e) for k in alerts.Kind for e in alerts.Event]
    for n, (kind, event) in enumerate(pairs):
        conn.execute(
            "INSERT INTO notifications (user_id, kind, event, title, message, entity_type, "
            "entity_id, dedup_key, created_at) "
            "VALUES (%s, %s, %s, 't', 'm', 'JOB', gen_random_uuid(), %s, "
            "now() - %s * interval '1 day')",
            (user_id, kind.value, event.value, f"pair:{n}", n + 1),
        )
    conn.execute("ANALYZE notifications")
    rule = alerts.shown_kinds(alerts.Preference.ALERTS)
    assert rule is not None
    shown = {(k, e) for k, e in pairs if k in rule[0] or e in rule[1]}

    with psycopg.connect(database_url, row_factory=dict_row) as tx:
        first = notification_store.list_page(
            tx, user_id, alerts.Preference.ALERTS, notification_store.NotificationFilter(limit=100)
        )
    assert {(n.kind, n.event) for n in first.notifications} == shown
    assert first.next_cursor is None

    params = {"user_id": user_id, "after_created_at": None, "after_id": None, "limit": 100}
    for unread, index in (
        (False, "notifications_alerts_idx"),
        (True, "notifications_alerts_unread_idx"),
    ):
        query = notification_store.list_query(alerts.Preference.ALERTS, unread=unread)
        nodes = explain(conn, "ANALYZE", query, params)
        assert index in {node.get("Index Name") for node in nodes}, nodes
        # Not one hidden row read and thrown away.
        assert sum(node.get("Rows Removed by Filter", 0) for node in nodes) == 0, nodes
    with psycopg.connect(database_url, row_factory=dict_row) as tx:
        mark = notification_store.QUERIES.mark_alert_notifications_read
        nodes = explain(tx, "COSTS", mark, {"user_id": user_id, "all": True, "ids": []})
        assert "notifications_alerts_unread_idx" in {node.get("Index Name") for node in nodes}
        marked = notification_store.mark_read(tx, user_id, alerts.Preference.ALERTS, ids=None)
    assert marked == len(shown)


# --- the routes -----------------------------------------------------------------------------------


def seed(server: RunningServer, user_id: UUID) -> dict[str, UUID]:
    """Seven notifications of every kind for the user (five that ALERTS shows); their ids by
    event."""
    with psycopg.connect(server.database_url, row_factory=dict_row) as tx:
        workflow_id = make_workflow(tx, user_id)
        state = alerts.WorkflowState(
            id=workflow_id,
            user_id=user_id,
            name="w",
            health=alerts.Health.FAILING,
            consecutive_failures=1,
        )
        now = datetime.now(UTC)
        transitions: list[alerts.Transition] = [
            alerts.BuildMoved(workflow=state, generation=1, status=BuildStatus.STARTED),  # INFO
            alerts.JobFinished(
                workflow=state, job_id=uuid.uuid4(), status=JobStatus.CANCELED
            ),  # WARN
            alerts.JobFinished(
                workflow=state, job_id=uuid.uuid4(), status=JobStatus.COMPLETED
            ),  # SUCCESS job.completed, SUCCESS workflow.recovered
            alerts.JobFinished(
                workflow=state, job_id=uuid.uuid4(), status=JobStatus.FAILED
            ),  # ERROR job.failed, ERROR workflow.failing
            alerts.Terminated(workflow=state, reason="too many", by_user=False),  # ALERT
        ]
        alerts.write(tx, alerts.decide_all(transitions, public_url=PUBLIC_URL, now=now))
        rows = tx.execute(
            "SELECT id, event FROM notifications WHERE user_id = %s", (user_id,)
        ).fetchall()
    return {row["event"]: row["id"] for row in rows}


def user_id_of(http: httpx.Client, auth: dict[str, str]) -> UUID:
    return UUID(http.get("/users/me", headers=auth).json()["id"])


def test_listing_applies_the_preference(server: RunningServer, http: httpx.Client) -> None:
    _, auth = new_user(http)
    me = http.get("/users/me", headers=auth)
    assert me.status_code == 200
    assert set(me.json()) == {"id", "email", "created_at", "notification_preference"}
    assert me.json()["notification_preference"] == "ALERTS"
    seed(server, UUID(me.json()["id"]))

    def events() -> list[tuple[str, str]]:
        page = http.get("/notifications", headers=auth)
        assert page.status_code == 200, page.text
        return [(n["kind"], n["title"]) for n in page.json()["notifications"]]

    assert events() == [
        ("ALERT", "Workflow auto-terminated"),
        ("ERROR", "Workflow failing"),
        ("ERROR", "Job failed"),
        ("SUCCESS", "Workflow recovered"),
        ("WARN", "Job canceled"),
    ]
    changed = http.patch("/users/me", headers=auth, json={"notification_preference": "ALL"})
    assert changed.status_code == 200 and changed.json()["notification_preference"] == "ALL"
    assert len(events()) == 7
    assert events()[-1] == ("INFO", "Build started")
    http.patch("/users/me", headers=auth, json={"notification_preference": "NONE"})
    assert events() == []

    first = http.get("/notifications", headers=auth, params={"limit": 1})
    assert first.json() == {"notifications": [], "next_cursor": None}


def test_pages_and_marking_read(server: RunningServer, http: httpx.Client) -> None:
    _, auth = new_user(http)
    ids = seed(server, user_id_of(http, auth))
    http.patch("/users/me", headers=auth, json={"notification_preference": "ALL"})
    page = http.get("/notifications", headers=auth, params={"limit": 3}).json()
    assert len(page["notifications"]) == 3 and page["next_cursor"]
    rest = http.get(
        "/notifications", headers=auth, params={"limit": 50, "cursor": page["next_cursor"]}
    ).json()
    assert len(rest["notifications"]) == 4 and rest["next_cursor"] is None
    first = page["notifications"][0]
    assert set(first) == {
        "id", "kind", "title", "message", "entity_type", "entity_id", "action_url", "read_at",
        "created_at",
    }  # fmt: skip

    marked = http.post("/notifications/read", headers=auth, json={"ids": [str(ids["job.failed"])]})
    assert marked.status_code == 200 and marked.json() == {"marked": 1}
    again = http.post("/notifications/read", headers=auth, json={"ids": [str(ids["job.failed"])]})
    assert again.json() == {"marked": 0}
    unread = http.get("/notifications", headers=auth, params={"unread": "true"}).json()
    assert len(unread["notifications"]) == 6
    assert str(ids["job.failed"]) not in {n["id"] for n in unread["notifications"]}
    everything = http.post("/notifications/read", headers=auth, json={"all": True})
    assert everything.json() == {"marked": 6}
    unread = http.get("/notifications", headers=auth, params={"unread": "true"}).json()
    assert unread["notifications"] == []
    listed = http.get("/notifications", headers=auth).json()["notifications"]
    assert all(n["read_at"] for n in listed)


def test_users_see_and_mark_only_their_own(server: RunningServer, http: httpx.Client) -> None:
    _, alice = new_user(http)
    _, bob = new_user(http)
    alices = seed(server, user_id_of(http, alice))
    assert http.get("/notifications", headers=bob).json()["notifications"] == []
    marked = http.post(
        "/notifications/read", headers=bob, json={"ids": [str(i) for i in alices.values()]}
    )
    assert marked.json() == {"marked": 0}
    assert http.post("/notifications/read", headers=bob, json={"all": True}).json() == {"marked": 0}
    unread = http.get("/notifications", headers=alice, params={"unread": "true"}).json()
    assert len(unread["notifications"]) == 5


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "field"),
    [
        ("POST", "/notifications/read", {"json": {}}, "ids"),
        ("POST", "/notifications/read", {"json": {"ids": [], "all": True}}, "ids"),
        ("POST", "/notifications/read", {"json": {"ids": [str(uuid.uuid4())], "all": True}}, "all"),
        ("POST", "/notifications/read", {"json": {"all": False}}, "all"),
        ("POST", "/notifications/read", {"json": {"ids": ["nope"]}}, "ids.0"),
        ("POST", "/notifications/read", {"json": {"ids": [str(uuid.uuid4())] * 201}}, "ids"),
        ("POST", "/notifications/read", {"json": {"every": True}}, "every"),
        ("GET", "/notifications", {"params": {"limit": 0}}, "limit"),
        ("GET", "/notifications", {"params": {"cursor": "x"}}, "cursor"),
        ("GET", "/notifications", {"params": {"unread": "maybe"}}, "unread"),
        ("GET", "/notifications", {"params": {"kind": "ERROR"}}, "kind"),
        ("PATCH", "/users/me", {"json": {}}, "notification_preference"),
        ("PATCH", "/users/me", {"json": {"notification_preference": "SOME"}},
         "notification_preference"),
        ("PATCH", "/users/me", {"json": {"email": "x@example.com"}}, "email"),
    ],
)  # fmt: skip
def test_invalid_requests_name_the_field(
    http: httpx.Client,
    user: dict[str, str],
    method: str,
    path: str,
    kwargs: dict[str, Any],
    field: str,
) -> None:
    response = http.request(method, path, headers=user, **kwargs)
    assert response.status_code == 422, response.text
    fields = [d["field"] for d in response.json()["error"]["details"]]
    assert field in fields, fields


def test_the_routes_need_a_token(http: httpx.Client) -> None:
    assert http.get("/notifications").status_code == 401
    assert http.get("/users/me").status_code == 401
    assert http.post("/notifications/read", json={"all": True}).status_code == 401


def test_grpc_notification_service(
    server: RunningServer, http: httpx.Client, grpc_channel: grpc.Channel
) -> None:
    _, auth = new_user(http)
    ids = seed(server, user_id_of(http, auth))
    stub = notifications_pb2_grpc.NotificationServiceStub(grpc_channel)  # type: ignore[no-untyped-call]
    metadata = (("authorization", auth["Authorization"]),)
    profile = stub.GetProfile(notifications_pb2.GetProfileRequest(), metadata=metadata)
    assert profile.notification_preference == "ALERTS"
    page = stub.ListNotifications(
        notifications_pb2.ListNotificationsRequest(limit=2), metadata=metadata
    )
    assert [n.kind for n in page.notifications] == ["ALERT", "ERROR"] and page.next_cursor
    assert page.notifications[0].action_url.startswith("/ui/workflows/")
    assert not page.notifications[0].HasField("read_at")
    marked = stub.MarkNotificationsRead(
        notifications_pb2.MarkNotificationsReadRequest(ids=[str(ids["job.failed"])]),
        metadata=metadata,
    )
    assert marked.marked == 1
    updated = stub.UpdateProfile(
        notifications_pb2.UpdateProfileRequest(notification_preference="ALL"), metadata=metadata
    )
    assert updated.notification_preference == "ALL"
    unread = stub.ListNotifications(
        notifications_pb2.ListNotificationsRequest(unread=True), metadata=metadata
    )
    assert len(unread.notifications) == 6
    with pytest.raises(grpc.RpcError) as caught:
        stub.MarkNotificationsRead(
            notifications_pb2.MarkNotificationsReadRequest(), metadata=metadata
        )
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as caught:
        stub.UpdateProfile(
            notifications_pb2.UpdateProfileRequest(notification_preference="LOUD"),
            metadata=metadata,
        )
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT


def test_the_cli(server: RunningServer, environ: Mapping[str, str], tmp_path: Path) -> None:
    run = Cli(server, environ, tmp_path / "config.json")
    email = f"cli-{uuid.uuid4().hex[:8]}@example.com"
    run("register", "--email", email, "--password", "correct horse")
    run("login", "--email", email, input="correct horse\n")
    me = json.loads(run("me", "--json").output)
    assert me["email"] == email and me["notification_preference"] == "ALERTS"
    ids = seed(server, UUID(me["id"]))
    listed = run("notifications").output
    assert "Workflow auto-terminated" in listed and "Build started" not in listed
    changed = json.loads(run("me", "--notification-preference", "ALL", "--json").output)
    assert changed["notification_preference"] == "ALL"
    page = json.loads(run("notifications", "list", "--unread", "--json").output)
    assert len(page["notifications"]) == 7
    assert (
        "marked 1 notification(s) read"
        in run("notifications", "read", str(ids["job.failed"])).output
    )
    assert "marked 6" in run("notifications", "read", "--all").output
    assert json.loads(run("notifications", "--unread", "--json").output)["notifications"] == []
    refused = run("notifications", "read", ok=False)
    assert refused.exit_code == 2
