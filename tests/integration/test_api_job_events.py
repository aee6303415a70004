"""A job's history over HTTP, gRPC and the CLI: GET /workflows/{id}/jobs/{job_id}/events, the
ListJobEvents RPC and `chronoverse jobs events`, against a real server, with the events written by
the real execution worker's store."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import grpc
import httpx
import psycopg
import pytest
from click.testing import CliRunner

from chronoverse.cli import cli
from chronoverse.job_events import MAX_JOB_EVENTS
from chronoverse.postgres import create_pool
from chronoverse.scheduling import RetryPolicy, RunResult, decide_outcome
from chronoverse.settings import PostgresSettings
from chronoverse.v1 import jobs_pb2, jobs_pb2_grpc
from services.execution_worker.store import JobStore
from tests.integration.conftest import RunningServer, new_user

pytestmark = pytest.mark.integration

POLICY = RetryPolicy(max_attempts=2, base_delay_s=0, max_delay_s=0)


@pytest.fixture
def db(server: RunningServer) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(server.database_url, autocommit=True) as conn:
        yield conn


@pytest.fixture
def store(server: RunningServer) -> Iterator[JobStore]:
    pool = create_pool(PostgresSettings(database_url=server.database_url), name="test-worker")
    yield JobStore(pool, owner="worker-a", lease_s=30)
    pool.close()


def retried_manual_job(
    http: httpx.Client, user: dict[str, str], db: Any, store: JobStore
) -> tuple[str, str]:
    """A manual job whose first attempt failed (SYSTEM, retried) and whose second completed."""
    workflow = http.post(
        "/workflows",
        headers=user,
        json={"name": "beat", "kind": "HEARTBEAT", "interval": 10080, "payload": {}},
    ).json()
    db.execute("UPDATE workflows SET build_status = 'COMPLETED' WHERE id = %s", (workflow["id"],))
    job = http.post(
        f"/workflows/{workflow['id']}/jobs", headers={**user, "Idempotency-Key": "history-1"}
    ).json()
    for result in (RunResult.system_failure("flaky network"), RunResult.success()):
        [claim] = store.claim([job["id"]])
        now = datetime.now(UTC)
        outcome = decide_outcome(result, attempt=claim.attempt, policy=POLICY, now=now)
        assert store.record(claim.job_id, claim.lease_token, outcome).written
    return str(workflow["id"]), str(job["id"])


def test_a_job_s_history_over_http(
    http: httpx.Client, user: dict[str, str], db: Any, store: JobStore
) -> None:
    workflow_id, job_id = retried_manual_job(http, user, db, store)
    response = http.get(f"/workflows/{workflow_id}/jobs/{job_id}/events", headers=user)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["truncated"] is False
    assert [e["type"] for e in body["events"]] == [
        "created",
        "claimed",
        "retry_scheduled",
        "claimed",
        "finished",
    ]
    assert all(set(e) == {"type", "at", "data"} for e in body["events"])
    created, _, retry, _, finished = (e["data"] for e in body["events"])
    assert (created["trigger"], created["idempotency_key"]) == ("MANUAL", "history-1")
    assert "flaky network" in retry["reason"]
    assert (finished["status"], finished["attempt"]) == ("COMPLETED", 2)


def test_another_user_s_job_history_is_not_found(
    http: httpx.Client, user: dict[str, str], db: Any, store: JobStore
) -> None:
    workflow_id, job_id = retried_manual_job(http, user, db, store)
    other = new_user(http)[1]
    path = f"/workflows/{workflow_id}/jobs/{job_id}/events"
    assert http.get(path, headers=other).status_code == 404
    assert http.get(path).status_code == 401
    _, other_job = retried_manual_job(http, other, db, store)
    # Another workflow's job (even one's own) is not found under this workflow.
    assert (
        http.get(f"/workflows/{workflow_id}/jobs/{other_job}/events", headers=user).status_code
        == 404
    )
    missing = http.get(
        f"/workflows/{workflow_id}/jobs/00000000-0000-0000-0000-000000000000/events", headers=user
    )
    assert missing.status_code == 404
    invalid = http.get(f"/workflows/{workflow_id}/jobs/nope/events", headers=user)
    assert invalid.status_code == 422
    assert [d["field"] for d in invalid.json()["error"]["details"]] == ["job_id"]
    unknown = http.get(path, headers=user, params={"limit": 5})
    assert unknown.status_code == 422


def test_the_history_is_bounded_to_the_newest_events(
    http: httpx.Client, user: dict[str, str], db: Any, store: JobStore
) -> None:
    workflow_id, job_id = retried_manual_job(http, user, db, store)
    db.execute(
        "INSERT INTO job_events (job_id, type, data) "
        "SELECT %s, 'republished', jsonb_build_object('publish_count', n) "
        "FROM generate_series(1, %s) AS n",
        (job_id, MAX_JOB_EVENTS - 1),
    )
    body = http.get(f"/workflows/{workflow_id}/jobs/{job_id}/events", headers=user).json()
    assert body["truncated"] is True
    assert len(body["events"]) == MAX_JOB_EVENTS
    assert body["events"][-1]["data"] == {"publish_count": MAX_JOB_EVENTS - 1}  # the newest last
    assert body["events"][0]["type"] == "finished"  # the four before it were left out


def test_a_job_s_history_over_grpc(
    http: httpx.Client, user: dict[str, str], db: Any, store: JobStore, grpc_channel: grpc.Channel
) -> None:
    workflow_id, job_id = retried_manual_job(http, user, db, store)
    stub = jobs_pb2_grpc.JobServiceStub(grpc_channel)
    metadata = (("authorization", user["Authorization"]),)
    answer = stub.ListJobEvents(
        jobs_pb2.ListJobEventsRequest(workflow_id=workflow_id, job_id=job_id), metadata=metadata
    )
    over_http = http.get(f"/workflows/{workflow_id}/jobs/{job_id}/events", headers=user).json()
    assert [e.type for e in answer.events] == [e["type"] for e in over_http["events"]]
    assert [json.loads(e.data_json) for e in answer.events] == [
        e["data"] for e in over_http["events"]
    ]
    assert answer.events[0].at.ToDatetime(tzinfo=UTC) == datetime.fromisoformat(
        over_http["events"][0]["at"]
    )
    assert answer.truncated is False
    other = (("authorization", new_user(http)[1]["Authorization"]),)
    with pytest.raises(grpc.RpcError) as info:
        stub.ListJobEvents(
            jobs_pb2.ListJobEventsRequest(workflow_id=workflow_id, job_id=job_id), metadata=other
        )
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as info:
        stub.ListJobEvents(
            jobs_pb2.ListJobEventsRequest(workflow_id=workflow_id, job_id="nope"),
            metadata=metadata,
        )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_a_job_s_history_from_the_cli(
    http: httpx.Client, user: dict[str, str], db: Any, store: JobStore, server: RunningServer
) -> None:
    workflow_id, job_id = retried_manual_job(http, user, db, store)
    env = {
        "CHRONOVERSE_SERVER_URL": server.http_url,
        "CHRONOVERSE_TOKEN": user["Authorization"].split()[1],
    }
    runner = CliRunner()
    table = runner.invoke(cli, ["jobs", "events", workflow_id, job_id], env=env)
    assert table.exit_code == 0, table.output
    lines = table.output.splitlines()
    assert lines[0].split() == ["AT", "EVENT", "DETAILS"]
    assert [line.split()[2] for line in lines[1:]] == [
        "created",
        "claimed",
        "retry_scheduled",
        "claimed",
        "finished",
    ]
    assert "worker=worker-a" in lines[2] and "status=COMPLETED" in lines[5]
    as_json = runner.invoke(cli, ["jobs", "events", workflow_id, job_id, "--json"], env=env)
    assert as_json.exit_code == 0
    assert json.loads(as_json.output)["events"][0]["data"]["idempotency_key"] == "history-1"
    other = {**env, "CHRONOVERSE_TOKEN": new_user(http)[1]["Authorization"].split()[1]}
    refused = runner.invoke(cli, ["jobs", "events", workflow_id, job_id], env=other)
    assert refused.exit_code == 1 and "not found" in refused.output.lower()
