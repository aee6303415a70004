"""Analytics over HTTP, gRPC and the CLI, from jobs and log lines stored in real Postgres.

The log lines of finished jobs are counted the way the log processor counts them: its own
close_logs statement runs on the end marker.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import httpx
import psycopg
import pytest
from click.testing import CliRunner
from google.protobuf.timestamp_pb2 import Timestamp

from chronoverse.cli import cli
from chronoverse.v1 import analytics_pb2, analytics_pb2_grpc
from services.log_processor.processor import QUERIES as LOG_QUERIES
from tests.integration.conftest import RunningServer, new_user
from tests.integration.test_api_grpc import field_violations

pytestmark = pytest.mark.integration

STATUSES = ("PENDING", "QUEUED", "RUNNING", "COMPLETED", "FAILED", "CANCELED")


@pytest.fixture
def db(server: RunningServer) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(server.database_url, autocommit=True) as conn:
        yield conn


def workflow(http: httpx.Client, auth: dict[str, str], kind: str = "CONTAINER") -> str:
    payload: dict[str, Any] = {"image": "busybox"} if kind == "CONTAINER" else {}
    response = http.post(
        "/workflows",
        headers=auth,
        json={"name": "w", "kind": kind, "interval": 60, "payload": payload},
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def job(
    db: Any,
    workflow_id: str,
    status: str,
    *,
    duration_s: float | None = None,
    age: timedelta = timedelta(days=1),
    attempt: int = 1,
    container: bool = False,
) -> str:
    """A job created ``age`` ago; one with a duration started then and ran that long."""
    created = datetime.now(UTC) - age
    started = created if duration_s is not None or status == "RUNNING" else None
    finished = created + timedelta(seconds=duration_s) if duration_s is not None else None
    row = db.execute(
        "INSERT INTO jobs (workflow_id, user_id, trigger, scheduled_at, status, attempt, "
        "created_at, started_at, finished_at, container_id) "
        "SELECT id, user_id, 'MANUAL', %s, %s, %s, %s, %s, %s, %s FROM workflows WHERE id = %s "
        "RETURNING id",
        (
            created,
            status,
            attempt,
            created,
            started,
            finished,
            "c0ffee" if container else None,
            workflow_id,
        ),
    ).fetchone()
    return str(row[0])


def store_lines(db: Any, job_id: str, count: int, *, attempt: int = 1) -> None:
    db.execute(
        "INSERT INTO job_logs (job_id, attempt, seq, stream, ts, line) "
        "SELECT %s, %s, g, 'stdout', now(), 'line ' || g FROM generate_series(0, %s - 1) AS g",
        (job_id, attempt, count),
    )


def end_marker(db: Any, job_id: str, attempt: int, last_seq: int) -> None:
    """What the log processor runs when it stores an attempt's end marker."""
    db.execute(
        LOG_QUERIES.close_logs,
        {
            "job_ids": [job_id],
            "attempts": [attempt],
            "last_seqs": [last_seq],
            "incomplete": [False],
        },
    )


def known_jobs(db: Any, container_wf: str, heartbeat_wf: str) -> None:
    """The set the figures below are computed from by hand."""
    # The container workflow: 4 COMPLETED (10, 20, 30, 40 s), 1 FAILED (100 s), 1 CANCELED
    # before it started, 1 RUNNING, 1 PENDING, 1 QUEUED.
    done = [job(db, container_wf, "COMPLETED", duration_s=d, container=True) for d in (10, 20)]
    job(db, container_wf, "COMPLETED", duration_s=30)
    job(db, container_wf, "COMPLETED", duration_s=40)
    failed = job(db, container_wf, "FAILED", duration_s=100, attempt=2, container=True)
    job(db, container_wf, "CANCELED")
    running = job(db, container_wf, "RUNNING", attempt=2, container=True)
    job(db, container_wf, "PENDING")
    job(db, container_wf, "QUEUED")
    # Lines: 5 and 0 of two closed jobs; 2 + 3 of a retried job, counted at its second end;
    # a running job whose first attempt's 4 lines were counted and whose second has 2 so far.
    store_lines(db, done[0], 5)
    end_marker(db, done[0], 1, 4)
    end_marker(db, done[1], 1, -1)
    store_lines(db, failed, 2)
    end_marker(db, failed, 1, 1)
    store_lines(db, failed, 3, attempt=2)
    end_marker(db, failed, 2, 2)
    store_lines(db, running, 4)
    end_marker(db, running, 1, 3)
    store_lines(db, running, 2, attempt=2)
    # The heartbeat workflow: 2 COMPLETED of 1 s each.
    job(db, heartbeat_wf, "COMPLETED", duration_s=1)
    job(db, heartbeat_wf, "COMPLETED", duration_s=1)
    # Outside a 7-day window: 1 FAILED of 1000 s, 50 lines.
    old = job(db, container_wf, "FAILED", duration_s=1000, age=timedelta(days=10), container=True)
    store_lines(db, old, 50)
    end_marker(db, old, 1, 49)


def counts(**given: int) -> dict[str, int]:
    return {status: given.get(status.lower(), 0) for status in STATUSES}


def test_figures_match_a_known_set_of_jobs(
    http: httpx.Client, user: dict[str, str], db: Any
) -> None:
    container_wf = workflow(http, user)
    heartbeat_wf = workflow(http, user, "HEARTBEAT")
    paused = workflow(http, user, "HEARTBEAT")
    terminated = workflow(http, user, "HEARTBEAT")
    db.execute("UPDATE workflows SET build_status = 'COMPLETED' WHERE id = %s", (container_wf,))
    db.execute("UPDATE workflows SET build_status = 'FAILED' WHERE id = %s", (heartbeat_wf,))
    assert http.post(f"/workflows/{paused}/pause", headers=user).status_code == 200
    assert http.post(f"/workflows/{terminated}/terminate", headers=user).status_code == 200
    known_jobs(db, container_wf, heartbeat_wf)

    mine = http.get("/analytics", headers=user)
    assert mine.status_code == 200, mine.text
    body = mine.json()
    assert body["jobs"] == 11
    assert body["jobs_by_status"] == counts(
        pending=1, queued=1, running=1, completed=6, failed=1, canceled=1
    )
    assert body["success_rate"] == pytest.approx(6 / 8)
    # Durations 1, 1, 10, 20, 30, 40, 100: the median is 20; p95 interpolates 40 and 100.
    assert body["duration_p50_s"] == pytest.approx(20)
    assert body["duration_p95_s"] == pytest.approx(40 + 0.7 * 60)
    assert body["execution_time_s"] == pytest.approx(202)
    assert body["log_lines"] == 5 + 0 + (2 + 3) + (4 + 2)
    assert body["workflows"] == {
        "total": 4,
        "by_state": {"active": 2, "paused": 1, "terminated": 1},
        "by_build_status": {"QUEUED": 2, "STARTED": 0, "COMPLETED": 1, "FAILED": 1},
    }
    since = datetime.fromisoformat(body["since"])
    until = datetime.fromisoformat(body["until"])
    assert until - since == timedelta(days=7)

    one = http.get(f"/workflows/{container_wf}/analytics", headers=user).json()
    assert one["workflow_id"] == container_wf
    assert "workflows" not in one
    assert one["jobs"] == 9
    assert one["jobs_by_status"] == counts(
        pending=1, queued=1, running=1, completed=4, failed=1, canceled=1
    )
    assert one["success_rate"] == pytest.approx(4 / 6)
    # Durations 10, 20, 30, 40, 100.
    assert one["duration_p50_s"] == pytest.approx(30)
    assert one["duration_p95_s"] == pytest.approx(40 + 0.8 * 60)
    assert one["execution_time_s"] == pytest.approx(200)
    assert one["log_lines"] == 16

    # A wider window takes in the old job and its lines.
    since_11d = (datetime.now(UTC) - timedelta(days=11)).isoformat()
    wide = http.get(
        f"/workflows/{container_wf}/analytics", headers=user, params={"since": since_11d}
    )
    assert wide.status_code == 200, wide.text
    assert wide.json()["jobs_by_status"]["FAILED"] == 2
    assert wide.json()["execution_time_s"] == pytest.approx(1200)
    assert wide.json()["log_lines"] == 16 + 50
    # A narrower one leaves out everything created a day ago.
    since_1h = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    narrow = http.get("/analytics", headers=user, params={"since": since_1h}).json()
    assert narrow["jobs"] == 0
    assert narrow["workflows"]["total"] == 4  # workflows are counted now, not over the window


def test_the_running_jobs_lines_count_as_they_are_stored(
    http: httpx.Client, user: dict[str, str], db: Any
) -> None:
    container_wf = workflow(http, user)
    running = job(db, container_wf, "RUNNING", container=True)
    store_lines(db, running, 3)
    path = f"/workflows/{container_wf}/analytics"
    assert http.get(path, headers=user).json()["log_lines"] == 3
    store_lines(db, running, 4, attempt=2)
    db.execute("UPDATE jobs SET attempt = 2 WHERE id = %s", (running,))
    assert http.get(path, headers=user).json()["log_lines"] == 7
    db.execute(
        "UPDATE jobs SET status = 'COMPLETED', finished_at = now() WHERE id = %s", (running,)
    )
    end_marker(db, running, 2, 3)
    assert http.get(path, headers=user).json()["log_lines"] == 7


def test_nothing_gives_zeros(http: httpx.Client, user: dict[str, str]) -> None:
    body = http.get("/analytics", headers=user).json()
    assert body["jobs"] == 0
    assert body["jobs_by_status"] == counts()
    assert body["success_rate"] is None
    assert body["duration_p50_s"] is None
    assert body["duration_p95_s"] is None
    assert body["execution_time_s"] == 0
    assert body["log_lines"] == 0
    assert body["workflows"]["total"] == 0
    assert body["workflows"]["by_state"] == {"active": 0, "paused": 0, "terminated": 0}


def test_another_users_jobs_never_count_and_their_workflow_is_absent(
    http: httpx.Client, user: dict[str, str], db: Any
) -> None:
    _, other = new_user(http)
    theirs = workflow(http, other)
    known_jobs(db, theirs, workflow(http, other, "HEARTBEAT"))
    mine = workflow(http, user)
    job(db, mine, "FAILED", duration_s=5)

    body = http.get("/analytics", headers=user).json()
    assert body["jobs_by_status"] == counts(failed=1)
    assert body["success_rate"] == 0
    assert body["duration_p50_s"] == pytest.approx(5)
    assert body["log_lines"] == 0
    assert body["workflows"]["total"] == 1

    foreign = http.get(f"/workflows/{theirs}/analytics", headers=user)
    assert foreign.status_code == 404, foreign.text
    assert http.get(f"/workflows/{theirs}/analytics", headers=other).json()["jobs"] == 9


@pytest.mark.parametrize(
    "since",
    [
        "yesterday",
        "2027-03-28",
        "2027-03-28T00:00:00",  # no offset
        "1700000000",
        (datetime.now(UTC) - timedelta(days=91)).isoformat(),
        (datetime.now(UTC) + timedelta(days=1)).isoformat(),
    ],
)
def test_a_bad_since_is_a_422_naming_it(
    http: httpx.Client, user: dict[str, str], since: str
) -> None:
    for path in ("/analytics", f"/workflows/{workflow(http, user)}/analytics"):
        response = http.get(path, headers=user, params={"since": since})
        assert response.status_code == 422, response.text
        assert [d["field"] for d in response.json()["error"]["details"]] == ["since"]


def test_an_unknown_parameter_is_a_422(http: httpx.Client, user: dict[str, str]) -> None:
    response = http.get("/analytics", headers=user, params={"from": "2027-03-28T00:00:00Z"})
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == "from"


def test_analytics_need_a_token(http: httpx.Client) -> None:
    assert http.get("/analytics").status_code == 401


def _stamp(value: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def test_grpc_gives_the_same_figures(
    http: httpx.Client, user: dict[str, str], db: Any, grpc_channel: grpc.Channel
) -> None:
    container_wf = workflow(http, user)
    known_jobs(db, container_wf, workflow(http, user, "HEARTBEAT"))
    stub = analytics_pb2_grpc.AnalyticsServiceStub(grpc_channel)
    metadata = (("authorization", user["Authorization"]),)

    mine = stub.GetUserAnalytics(analytics_pb2.GetUserAnalyticsRequest(), metadata=metadata)
    over_http = http.get("/analytics", headers=user).json()
    assert mine.jobs.jobs == over_http["jobs"] == 11
    assert mine.jobs.jobs_by_status.completed == 6
    assert mine.jobs.jobs_by_status.pending == 1
    assert mine.jobs.success_rate == pytest.approx(over_http["success_rate"])
    assert mine.jobs.duration_p95_s == pytest.approx(over_http["duration_p95_s"])
    assert mine.jobs.log_lines == over_http["log_lines"]
    assert mine.workflows.total == 2
    assert mine.workflows.by_state.active == 2
    assert mine.workflows.by_build_status.queued == 2

    wide = stub.GetWorkflowAnalytics(
        analytics_pb2.GetWorkflowAnalyticsRequest(
            workflow_id=container_wf, since=_stamp(datetime.now(UTC) - timedelta(days=11))
        ),
        metadata=metadata,
    )
    assert wide.workflow_id == container_wf
    assert wide.jobs.jobs == 10
    assert wide.jobs.log_lines == 66

    empty = stub.GetUserAnalytics(
        analytics_pb2.GetUserAnalyticsRequest(since=_stamp(datetime.now(UTC))),
        metadata=(("authorization", new_user(http)[1]["Authorization"]),),
    )
    assert empty.jobs.jobs == 0
    assert not empty.jobs.HasField("success_rate")
    assert not empty.jobs.HasField("duration_p50_s")


def test_grpc_refuses_a_foreign_workflow_and_a_bad_since(
    http: httpx.Client, user: dict[str, str], grpc_channel: grpc.Channel
) -> None:
    stub = analytics_pb2_grpc.AnalyticsServiceStub(grpc_channel)
    metadata = (("authorization", user["Authorization"]),)
    theirs = workflow(http, new_user(http)[1])
    with pytest.raises(grpc.RpcError) as info:
        stub.GetWorkflowAnalytics(
            analytics_pb2.GetWorkflowAnalyticsRequest(workflow_id=theirs), metadata=metadata
        )
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as info:
        stub.GetUserAnalytics(
            analytics_pb2.GetUserAnalyticsRequest(
                since=_stamp(datetime.now(UTC) - timedelta(days=100))
            ),
            metadata=metadata,
        )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(info.value) == {"since"}
    with pytest.raises(grpc.RpcError) as info:
        stub.GetWorkflowAnalytics(
            analytics_pb2.GetWorkflowAnalyticsRequest(workflow_id="nope"), metadata=metadata
        )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_cli_prints_a_table_and_json(
    http: httpx.Client, user: dict[str, str], db: Any, server: RunningServer
) -> None:
    container_wf = workflow(http, user)
    known_jobs(db, container_wf, workflow(http, user, "HEARTBEAT"))
    env = {
        "CHRONOVERSE_SERVER_URL": server.http_url,
        "CHRONOVERSE_TOKEN": user["Authorization"].split()[1],
    }
    table = CliRunner().invoke(cli, ["analytics"], env=env)
    assert table.exit_code == 0, table.output
    rows = dict(re.split(r"\s{2,}", line.strip()) for line in table.output.splitlines())
    assert rows["jobs"] == "11"
    assert rows["COMPLETED"] == "6"
    assert rows["success rate"] == "75.0%"
    assert rows["log lines"] == "16"
    assert rows["active"] == "2"

    one = CliRunner().invoke(
        cli, ["analytics", "--workflow", container_wf, "--since", "11d", "--json"], env=env
    )
    assert one.exit_code == 0, one.output
    assert json.loads(one.output)["jobs"] == 10

    bad = CliRunner().invoke(cli, ["analytics", "--since", "200d", "--json"], env=env)
    assert bad.exit_code == 1
    assert json.loads(bad.output)["error"]["details"][0]["field"] == "since"
