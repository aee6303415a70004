"""Manual runs and the jobs API over HTTP, gRPC and the CLI, against real Postgres."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import psycopg
import pytest
from click.testing import CliRunner

from chronoverse.cli import cli
from chronoverse.v1 import jobs_pb2, jobs_pb2_grpc
from tests.integration.conftest import RunningServer, new_user

pytestmark = pytest.mark.integration

JOB_FIELDS = {
    "id",
    "logs_incomplete",
    "workflow_id",
    "status",
    "trigger",
    "scheduled_at",
    "queued_at",
    "started_at",
    "completed_at",
    "attempt",
    "exit_code",
    "failure_kind",
    "error",
}


@pytest.fixture
def db(server: RunningServer) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(server.database_url, autocommit=True) as conn:
        yield conn


def built_workflow(http: httpx.Client, auth: dict[str, str], db: psycopg.Connection[Any]) -> str:
    workflow = http.post(
        "/workflows",
        headers=auth,
        json={"name": "beat", "kind": "HEARTBEAT", "interval": 10080, "payload": {}},
    ).json()
    db.execute("UPDATE workflows SET build_status = 'COMPLETED' WHERE id = %s", (workflow["id"],))
    return str(workflow["id"])


def test_a_manual_run_creates_a_pending_manual_job(
    http: httpx.Client, user: dict[str, str], db: Any
) -> None:
    workflow_id = built_workflow(http, user, db)
    response = http.post(f"/workflows/{workflow_id}/jobs", headers=user)
    assert response.status_code == 201, response.text
    job = response.json()
    assert set(job) == JOB_FIELDS
    assert (job["status"], job["trigger"], job["attempt"]) == ("PENDING", "MANUAL", 0)
    assert http.get(f"/workflows/{workflow_id}/jobs/{job['id']}", headers=user).json() == job


def test_manual_runs_are_idempotent_by_key(
    http: httpx.Client, user: dict[str, str], db: Any
) -> None:
    workflow_id = built_workflow(http, user, db)
    keyed = {**user, "Idempotency-Key": "run-1"}
    first = http.post(f"/workflows/{workflow_id}/jobs", headers=keyed)
    second = http.post(f"/workflows/{workflow_id}/jobs", headers=keyed)
    assert first.status_code == second.status_code == 201
    assert first.json()["id"] == second.json()["id"]
    assert len(http.get(f"/workflows/{workflow_id}/jobs", headers=user).json()["jobs"]) == 1


def test_manual_runs_of_unbuilt_or_terminated_workflows_are_409(
    http: httpx.Client, user: dict[str, str], db: Any
) -> None:
    queued = http.post(
        "/workflows",
        headers=user,
        json={"name": "c", "kind": "CONTAINER", "interval": 5, "payload": {"image": "busybox"}},
    ).json()
    response = http.post(f"/workflows/{queued['id']}/jobs", headers=user)
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "workflow_not_built"
    workflow_id = built_workflow(http, user, db)
    http.post(f"/workflows/{workflow_id}/terminate", headers=user)
    response = http.post(f"/workflows/{workflow_id}/jobs", headers=user)
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "workflow_terminated"


def test_jobs_list_pages_and_filters(http: httpx.Client, user: dict[str, str], db: Any) -> None:
    workflow_id = built_workflow(http, user, db)
    ids = [http.post(f"/workflows/{workflow_id}/jobs", headers=user).json()["id"] for _ in range(3)]
    db.execute("UPDATE jobs SET status = 'FAILED', failure_kind = 'USER' WHERE id = %s", (ids[0],))
    db.execute(
        "INSERT INTO jobs (workflow_id, user_id, trigger, scheduled_at, status) "
        "SELECT id, user_id, 'AUTOMATIC', now(), 'COMPLETED' FROM workflows WHERE id = %s",
        (workflow_id,),
    )
    seen, cursor = [], None
    while True:
        page = http.get(
            f"/workflows/{workflow_id}/jobs",
            headers=user,
            params={"limit": 3, **({"cursor": cursor} if cursor else {})},
        ).json()
        seen += [j["id"] for j in page["jobs"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 4
    assert seen[1:] == list(reversed(ids))

    def ids_for(**params: str) -> list[str]:
        return [
            j["id"]
            for j in http.get(f"/workflows/{workflow_id}/jobs", headers=user, params=params).json()[
                "jobs"
            ]
        ]

    assert ids_for(status="FAILED") == [ids[0]]
    assert len(ids_for(trigger="AUTOMATIC")) == 1
    assert ids_for(trigger="MANUAL", status="PENDING") == list(reversed(ids[1:]))
    bad = http.get(f"/workflows/{workflow_id}/jobs", headers=user, params={"status": "DONE"})
    assert bad.status_code == 422
    assert bad.json()["error"]["details"][0]["field"] == "status"


def test_another_users_jobs_are_404(http: httpx.Client, user: dict[str, str], db: Any) -> None:
    workflow_id = built_workflow(http, user, db)
    job_id = http.post(f"/workflows/{workflow_id}/jobs", headers=user).json()["id"]
    _, other = new_user(http)
    assert http.get(f"/workflows/{workflow_id}/jobs", headers=other).status_code == 404
    assert http.get(f"/workflows/{workflow_id}/jobs/{job_id}", headers=other).status_code == 404
    assert http.post(f"/workflows/{workflow_id}/jobs", headers=other).status_code == 404
    missing = http.get(
        f"/workflows/{workflow_id}/jobs/00000000-0000-0000-0000-000000000000", headers=user
    )
    assert missing.status_code == 404


def test_jobs_over_grpc(
    http: httpx.Client, user: dict[str, str], db: Any, grpc_channel: grpc.Channel
) -> None:
    workflow_id = built_workflow(http, user, db)
    metadata = (("authorization", user["Authorization"]),)
    stub = jobs_pb2_grpc.JobServiceStub(grpc_channel)
    job = stub.RunWorkflow(jobs_pb2.RunWorkflowRequest(workflow_id=workflow_id), metadata=metadata)
    assert (job.status, job.trigger) == ("PENDING", "MANUAL")
    assert not job.HasField("started_at")
    assert (
        stub.GetJob(jobs_pb2.GetJobRequest(workflow_id=workflow_id, id=job.id), metadata=metadata)
        == job
    )
    listed = stub.ListJobs(
        jobs_pb2.ListJobsRequest(workflow_id=workflow_id, status="PENDING"), metadata=metadata
    )
    assert [j.id for j in listed.jobs] == [job.id]
    with pytest.raises(grpc.RpcError) as info:
        stub.ListJobs(
            jobs_pb2.ListJobsRequest(workflow_id=workflow_id, trigger="CRON"), metadata=metadata
        )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    http.post(f"/workflows/{workflow_id}/terminate", headers=user)
    with pytest.raises(grpc.RpcError) as info:
        stub.RunWorkflow(jobs_pb2.RunWorkflowRequest(workflow_id=workflow_id), metadata=metadata)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_jobs_from_the_cli(
    http: httpx.Client, user: dict[str, str], db: Any, server: RunningServer
) -> None:
    workflow_id = built_workflow(http, user, db)
    env = {
        "CHRONOVERSE_SERVER_URL": server.http_url,
        "CHRONOVERSE_TOKEN": user["Authorization"].split()[1],
    }
    runner = CliRunner()
    started = runner.invoke(cli, ["trigger", workflow_id, "--json"], env=env)
    assert started.exit_code == 0, started.output
    job = json.loads(started.output)
    table = runner.invoke(cli, ["jobs", "list", workflow_id], env=env)
    assert table.exit_code == 0
    assert table.output.split("\n")[0].split() == [
        "ID",
        "STATUS",
        "TRIGGER",
        "SCHEDULED",
        "STARTED",
        "ATTEMPT",
        "ERROR",
    ]
    assert job["id"] in table.output and "MANUAL" in table.output
    shown = runner.invoke(cli, ["jobs", "get", workflow_id, job["id"]], env=env)
    assert shown.exit_code == 0 and "PENDING" in shown.output
    http.post(f"/workflows/{workflow_id}/terminate", headers=user)
    refused = runner.invoke(cli, ["trigger", workflow_id], env=env)
    assert refused.exit_code == 1 and "terminated" in refused.output
