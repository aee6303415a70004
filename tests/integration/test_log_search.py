"""Searching, filtering and downloading a job's stored log over HTTP, gRPC and the CLI; and the
workflow's `retain_logs` switch on every edge. Lines are stored in the server's real Postgres."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import httpx
import psycopg
import pytest
from click.testing import CliRunner

from chronoverse.cli import cli
from chronoverse.v1 import jobs_pb2, jobs_pb2_grpc, workflows_pb2, workflows_pb2_grpc
from tests.integration.conftest import RunningServer, new_user

pytestmark = pytest.mark.integration

# (stream, line) of attempt 1, seq = index.
LINES = [
    ("stdout", "Starting up"),
    ("stderr", "ERROR: disk 100% full"),
    ("stdout", "progress 50_percent"),
    ("stderr", "error in module_a"),
    ("stdout", "all good"),
    ("stdout", "path C:\\temp\\x"),
    ("stdout", "100 percent done"),
]


@pytest.fixture
def db(server: RunningServer) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(server.database_url, autocommit=True) as conn:
        yield conn


def finished_job(http: httpx.Client, auth: dict[str, str], db: Any) -> tuple[str, str]:
    """A COMPLETED CONTAINER job of attempt 1, its end marker stored (no lines yet)."""
    workflow = http.post(
        "/workflows",
        headers=auth,
        json={"name": "box", "kind": "CONTAINER", "interval": 60, "payload": {"image": "busybox"}},
    ).json()
    job_id = db.execute(
        "INSERT INTO jobs (workflow_id, user_id, trigger, scheduled_at, status, attempt, "
        "started_at, finished_at, logs_attempt, logs_last_seq, logs_closed_at) "
        "SELECT id, user_id, 'MANUAL', now(), 'COMPLETED', 1, now(), now(), 1, -1, now() "
        "FROM workflows WHERE id = %s RETURNING id",
        (workflow["id"],),
    ).fetchone()[0]
    return workflow["id"], str(job_id)


def store(db: Any, job_id: str, lines: list[tuple[str, str]]) -> None:
    now = datetime.now(UTC)
    with db.cursor() as cur:
        cur.executemany(
            "INSERT INTO job_logs (job_id, attempt, seq, stream, ts, line) "
            "VALUES (%s, 1, %s, %s, %s, %s)",
            [(job_id, seq, stream, now, line) for seq, (stream, line) in enumerate(lines)],
        )
    db.execute("UPDATE jobs SET logs_last_seq = %s WHERE id = %s", (len(lines) - 1, job_id))


def store_many(db: Any, job_id: str, count: int) -> None:
    """Lines 0..count-1: `line <seq>`, stderr when seq is a multiple of 10."""
    db.execute(
        "INSERT INTO job_logs (job_id, attempt, seq, stream, ts, line) "
        "SELECT %s, 1, g, CASE WHEN g %% 10 = 0 THEN 'stderr' ELSE 'stdout' END, now(), "
        "'line ' || g FROM generate_series(0, %s - 1) AS g",
        (job_id, count),
    )
    db.execute("UPDATE jobs SET logs_last_seq = %s WHERE id = %s", (count - 1, job_id))


def search(http: httpx.Client, auth: dict[str, str], path: str, **params: Any) -> list[str]:
    response = http.get(path, headers=auth, params=params)
    assert response.status_code == 200, response.text
    return [x["line"] for x in response.json()["logs"]]


@pytest.fixture
def searched(http: httpx.Client, user: dict[str, str], db: Any) -> str:
    workflow_id, job_id = finished_job(http, user, db)
    store(db, job_id, LINES)
    return f"/workflows/{workflow_id}/jobs/{job_id}/logs"


def test_search_returns_matching_lines_only_case_insensitively(
    http: httpx.Client, user: dict[str, str], searched: str
) -> None:
    assert search(http, user, searched, q="error") == ["ERROR: disk 100% full", "error in module_a"]
    assert search(http, user, searched, q="GOOD") == ["all good"]
    assert search(http, user, searched, q="no such text") == []
    # The whole shape of a page, as without q.
    page = http.get(searched, headers=user, params={"q": "percent"}).json()
    assert set(page) == {"attempt", "logs", "next_cursor", "incomplete"}
    assert [(x["seq"], x["stream"]) for x in page["logs"]] == [(2, "stdout"), (6, "stdout")]
    assert page["next_cursor"] is None and page["attempt"] == 1 and not page["incomplete"]


def test_like_wildcards_in_the_search_text_are_plain_characters(
    http: httpx.Client, user: dict[str, str], searched: str
) -> None:
    assert search(http, user, searched, q="100%") == ["ERROR: disk 100% full"]
    assert search(http, user, searched, q="%") == ["ERROR: disk 100% full"]
    assert search(http, user, searched, q="_") == ["progress 50_percent", "error in module_a"]
    assert search(http, user, searched, q="50_p") == ["progress 50_percent"]
    assert search(http, user, searched, q="\\") == ["path C:\\temp\\x"]
    assert search(http, user, searched, q="C:\\t") == ["path C:\\temp\\x"]


def test_the_stream_filter_works_with_and_without_search(
    http: httpx.Client, user: dict[str, str], searched: str
) -> None:
    assert search(http, user, searched, stream="stderr") == [
        "ERROR: disk 100% full",
        "error in module_a",
    ]
    assert search(http, user, searched, q="error", stream="stdout") == []
    assert search(http, user, searched, q="100", stream="stdout") == ["100 percent done"]


def test_search_results_page_with_a_cursor(
    http: httpx.Client, user: dict[str, str], searched: str
) -> None:
    first = http.get(searched, headers=user, params={"q": "e", "limit": 2}).json()
    assert [x["seq"] for x in first["logs"]] == [1, 2] and first["next_cursor"] == "1.2"
    rest = http.get(
        searched, headers=user, params={"q": "e", "limit": 10, "cursor": first["next_cursor"]}
    ).json()
    assert [x["seq"] for x in rest["logs"]] == [3, 5, 6] and rest["next_cursor"] is None


@pytest.mark.parametrize(
    ("suffix", "params", "field"),
    [
        ("", {"q": ""}, "q"),
        ("", {"q": "x" * 201}, "q"),
        ("", {"q": "a\x00b"}, "q"),
        ("", {"stream": "both"}, "stream"),
        ("/download", {"format": "pdf"}, "format"),
        ("/download", {"q": "y" * 201}, "q"),
        ("/download", {"stream": "stdin"}, "stream"),
        ("/download", {"attempt": 0}, "attempt"),
        ("/download", {"grep": "x"}, "grep"),
    ],
)
def test_bad_search_and_download_parameters_are_422_naming_the_field(
    http: httpx.Client,
    user: dict[str, str],
    searched: str,
    suffix: str,
    params: dict[str, Any],
    field: str,
) -> None:
    response = http.get(searched + suffix, headers=user, params=params)
    assert response.status_code == 422, response.text
    assert [d["field"] for d in response.json()["error"]["details"]] == [field]


def test_download_of_a_large_log_in_each_format(
    http: httpx.Client, user: dict[str, str], db: Any
) -> None:
    workflow_id, job_id = finished_job(http, user, db)
    count = 50_000
    store_many(db, job_id, count)
    path = f"/workflows/{workflow_id}/jobs/{job_id}/logs/download"

    with http.stream("GET", path, headers=user, params={"format": "txt"}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/plain; charset=utf-8"
        assert response.headers["content-disposition"] == (
            f'attachment; filename="job-{job_id}-attempt-1.txt"'
        )
        assert "content-length" not in response.headers  # streamed, not buffered whole
        chunks = list(response.iter_bytes())
    text = b"".join(chunks).decode()
    assert text.splitlines() == [f"line {n}" for n in range(count)]
    assert text.endswith("\n")

    response = http.get(path, headers=user, params={"format": "jsonl"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-ndjson"
    assert response.headers["content-disposition"].endswith('attempt-1.jsonl"')
    rows = [json.loads(x) for x in response.text.splitlines()]
    assert [r["seq"] for r in rows] == list(range(count))
    assert set(rows[0]) == {"attempt", "seq", "stream", "ts", "line"}
    assert rows[10] | {"ts": None} == {
        "attempt": 1,
        "seq": 10,
        "stream": "stderr",
        "ts": None,
        "line": "line 10",
    }

    response = http.get(path, headers=user, params={"format": "json"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    document = response.json()
    assert document["job_id"] == job_id and document["attempt"] == 1
    assert document["incomplete"] is False
    assert [x["line"] for x in document["logs"]] == [f"line {n}" for n in range(count)]
    assert document["logs"][-1] == rows[-1]

    # The stream filter (and the search) apply; the file name says which stream.
    response = http.get(path, headers=user, params={"format": "jsonl", "stream": "stderr"})
    assert response.headers["content-disposition"].endswith('attempt-1-stderr.jsonl"')
    assert [json.loads(x)["seq"] for x in response.text.splitlines()] == list(range(0, count, 10))
    response = http.get(f"/jobs/{job_id}/logs/download", headers=user, params={"q": "line 4999"})
    assert response.text.splitlines() == ["line 4999"] + [f"line {n}" for n in range(49990, 50000)]


def test_an_empty_log_downloads_as_an_empty_file(
    http: httpx.Client, user: dict[str, str], db: Any
) -> None:
    workflow_id, job_id = finished_job(http, user, db)
    path = f"/workflows/{workflow_id}/jobs/{job_id}/logs/download"
    assert http.get(path, headers=user).content == b""
    assert http.get(path, headers=user, params={"format": "jsonl"}).content == b""
    assert http.get(path, headers=user, params={"format": "json"}).json() == {
        "job_id": job_id,
        "attempt": 1,
        "logs": [],
        "incomplete": False,
    }


def test_another_users_job_is_404_for_search_and_download(
    http: httpx.Client, user: dict[str, str], db: Any, searched: str
) -> None:
    _, other = new_user(http)
    job_id = searched.split("/")[4]
    for path in (searched, f"{searched}/download", f"/jobs/{job_id}/logs/download"):
        response = http.get(path, headers=other, params={"q": "error"})
        assert response.status_code == 404, (path, response.text)


def test_grpc_list_logs_searches_and_filters(
    http: httpx.Client,
    user: dict[str, str],
    db: Any,
    searched: str,
    grpc_channel: grpc.Channel,
) -> None:
    workflow_id, job_id = searched.split("/")[2], searched.split("/")[4]
    stub = jobs_pb2_grpc.JobServiceStub(grpc_channel)
    metadata = (("authorization", user["Authorization"]),)

    def lines(**fields: Any) -> list[str]:
        request = jobs_pb2.ListLogsRequest(workflow_id=workflow_id, job_id=job_id, **fields)
        return [x.line for x in stub.ListLogs(request, metadata=metadata).logs]

    assert lines(q="ERROR") == ["ERROR: disk 100% full", "error in module_a"]
    assert lines(q="100%", stream="stderr") == ["ERROR: disk 100% full"]
    assert lines(stream="stdout", limit=2) == ["Starting up", "progress 50_percent"]
    page = stub.ListLogs(
        jobs_pb2.ListLogsRequest(workflow_id=workflow_id, job_id=job_id, limit=1, q="e"),
        metadata=metadata,
    )
    assert page.attempt == 1 and page.next_cursor == "1.1" and not page.incomplete
    with pytest.raises(grpc.RpcError) as info:
        lines(q="z" * 201)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    _, other = new_user(http)
    with pytest.raises(grpc.RpcError) as info:
        stub.ListLogs(
            jobs_pb2.ListLogsRequest(workflow_id=workflow_id, job_id=job_id),
            metadata=(("authorization", other["Authorization"]),),
        )
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_cli_greps_filters_and_downloads(
    http: httpx.Client, user: dict[str, str], searched: str, server: RunningServer, tmp_path: Path
) -> None:
    job_id = searched.split("/")[4]
    env = {
        "CHRONOVERSE_SERVER_URL": server.http_url,
        "CHRONOVERSE_TOKEN": user["Authorization"].split()[1],
    }
    run = CliRunner().invoke
    grepped = run(cli, ["logs", job_id, "--grep", "ERROR", "--streams"], env=env)
    assert grepped.exit_code == 0, grepped.output
    assert grepped.output.splitlines() == [
        "stderr ERROR: disk 100% full",
        "stderr error in module_a",
    ]
    filtered = run(cli, ["logs", job_id, "--stream", "stdout", "--grep", "100"], env=env)
    assert filtered.output.splitlines() == ["100 percent done"]
    followed = run(cli, ["logs", job_id, "-f", "--grep", "error", "--streams"], env=env)
    assert followed.exit_code == 0 and followed.output == grepped.output

    target = tmp_path / "log.jsonl"
    saved = run(cli, ["logs", job_id, "--download", "jsonl", "-o", str(target)], env=env)
    assert saved.exit_code == 0, saved.output
    rows = [json.loads(x) for x in target.read_text().splitlines()]
    assert [r["line"] for r in rows] == [line for _, line in LINES]
    printed = run(cli, ["logs", job_id, "--download", "txt", "--stream", "stderr"], env=env)
    assert printed.output.splitlines() == ["ERROR: disk 100% full", "error in module_a"]
    assert run(cli, ["logs", job_id, "-o", str(target)], env=env).exit_code == 2
    assert run(cli, ["logs", job_id, "-f", "--download", "txt"], env=env).exit_code == 2


# --- the retain_logs switch on every edge -------------------------------------------------------


def test_retain_logs_defaults_to_true_and_changes_over_http(
    http: httpx.Client, user: dict[str, str]
) -> None:
    body = {"name": "w", "kind": "HEARTBEAT", "interval": 5}
    created = http.post("/workflows", headers=user, json=body).json()
    assert created["retain_logs"] is True
    off = http.post("/workflows", headers=user, json={**body, "retain_logs": False}).json()
    assert off["retain_logs"] is False
    assert http.get(f"/workflows/{off['id']}", headers=user).json()["retain_logs"] is False
    path = f"/workflows/{created['id']}"
    updated = http.put(path, headers=user, json={"retain_logs": False})
    assert updated.status_code == 200, updated.text
    assert updated.json()["retain_logs"] is False
    # Other changes keep it.
    assert http.put(path, headers=user, json={"name": "x"}).json()["retain_logs"] is False
    response = http.put(path, headers=user, json={"retain_logs": "sometimes"})
    assert response.status_code == 422
    assert [d["field"] for d in response.json()["error"]["details"]] == ["retain_logs"]


def test_retain_logs_over_grpc(user: dict[str, str], grpc_channel: grpc.Channel) -> None:
    stub = workflows_pb2_grpc.WorkflowServiceStub(grpc_channel)
    metadata = (("authorization", user["Authorization"]),)
    kept = stub.CreateWorkflow(
        workflows_pb2.CreateWorkflowRequest(name="g", kind="HEARTBEAT", interval=5),
        metadata=metadata,
    )
    assert kept.retain_logs is True
    dropped = stub.CreateWorkflow(
        workflows_pb2.CreateWorkflowRequest(
            name="g", kind="HEARTBEAT", interval=5, retain_logs=False
        ),
        metadata=metadata,
    )
    assert dropped.retain_logs is False
    updated = stub.UpdateWorkflow(
        workflows_pb2.UpdateWorkflowRequest(id=dropped.id, retain_logs=True), metadata=metadata
    )
    assert updated.retain_logs is True
    got = stub.GetWorkflow(workflows_pb2.GetWorkflowRequest(id=kept.id), metadata=metadata)
    assert got.retain_logs is True


def test_retain_logs_over_the_cli(user: dict[str, str], server: RunningServer) -> None:
    env = {
        "CHRONOVERSE_SERVER_URL": server.http_url,
        "CHRONOVERSE_TOKEN": user["Authorization"].split()[1],
    }
    run = CliRunner().invoke
    created = run(
        cli,
        [
            *("workflows", "create", "--name", "c", "--kind", "HEARTBEAT", "--interval", "5"),
            *("--no-retain-logs", "--json"),
        ],
        env=env,
    )
    assert created.exit_code == 0, created.output
    workflow = json.loads(created.output)
    assert workflow["retain_logs"] is False
    updated = run(cli, ["workflows", "update", workflow["id"], "--retain-logs", "--json"], env=env)
    assert updated.exit_code == 0, updated.output
    assert json.loads(updated.output)["retain_logs"] is True
