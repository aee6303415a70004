"""Reading logs over HTTP pages, SSE, gRPC and the CLI, from lines stored in real Postgres."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import grpc
import httpx
import psycopg
import pytest
import redis
from click.testing import CliRunner
from httpx_sse import connect_sse

from chronoverse.cli import cli
from chronoverse.domain import LogStream
from chronoverse.logs import LogLine, encode_live_end, encode_live_lines, live_channel
from chronoverse.v1 import jobs_pb2, jobs_pb2_grpc
from tests.integration.conftest import RunningServer, new_user

pytestmark = pytest.mark.integration


@pytest.fixture
def db(server: RunningServer) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(server.database_url, autocommit=True) as conn:
        yield conn


def job_with_lines(
    http: httpx.Client, auth: dict[str, str], db: Any, count: int, *, finished: bool = True
) -> tuple[str, str]:
    workflow = http.post(
        "/workflows",
        headers=auth,
        json={"name": "box", "kind": "CONTAINER", "interval": 60, "payload": {"image": "busybox"}},
    ).json()
    status = "COMPLETED" if finished else "RUNNING"
    job_id = db.execute(
        "INSERT INTO jobs (workflow_id, user_id, trigger, scheduled_at, status, attempt, "
        "finished_at) "
        "SELECT id, user_id, 'MANUAL', now(), %s, 1, CASE WHEN %s THEN now() END FROM workflows "
        "WHERE id = %s RETURNING id",
        (status, finished, workflow["id"]),
    ).fetchone()[0]
    add_lines(db, job_id, range(count))
    if finished:
        db.execute(
            "UPDATE jobs SET logs_last_seq = %s, logs_closed_at = now() WHERE id = %s",
            (count - 1, job_id),
        )
    return workflow["id"], str(job_id)


def add_lines(db: Any, job_id: Any, seqs: range) -> None:
    for seq in seqs:
        db.execute(
            "INSERT INTO job_logs (job_id, seq, stream, ts, line) VALUES (%s, %s, %s, %s, %s)",
            (job_id, seq, "stdout" if seq % 2 == 0 else "stderr", datetime.now(UTC), f"line {seq}"),
        )


def log_lines(seqs: range) -> list[LogLine]:
    """The lines :func:`add_lines` stores, as the log processor publishes them."""
    return [
        LogLine(
            seq=seq,
            stream=LogStream.STDOUT if seq % 2 == 0 else LogStream.STDERR,
            ts=datetime.now(UTC),
            line=f"line {seq}",
        )
        for seq in seqs
    ]


def test_pages_oldest_first_with_a_stream_filter(
    http: httpx.Client, user: dict[str, str], db: Any
) -> None:
    workflow_id, job_id = job_with_lines(http, user, db, 5)
    first = http.get(
        f"/workflows/{workflow_id}/jobs/{job_id}/logs", headers=user, params={"limit": 3}
    ).json()
    assert [x["seq"] for x in first["logs"]] == [0, 1, 2]
    assert set(first["logs"][0]) == {"seq", "stream", "ts", "line"}
    second = http.get(
        f"/jobs/{job_id}/logs", headers=user, params={"limit": 3, "cursor": first["next_cursor"]}
    ).json()
    assert [x["seq"] for x in second["logs"]] == [3, 4] and second["next_cursor"] is None
    stderr = http.get(f"/jobs/{job_id}/logs", headers=user, params={"stream": "stderr"}).json()
    assert [x["line"] for x in stderr["logs"]] == ["line 1", "line 3"]
    _, other = new_user(http)
    assert http.get(f"/jobs/{job_id}/logs", headers=other).status_code == 404
    assert http.get(f"/jobs/{job_id}/logs/stream", headers=other).status_code == 404


def test_sse_replays_a_finished_job_then_ends(
    http: httpx.Client, user: dict[str, str], db: Any
) -> None:
    workflow_id, job_id = job_with_lines(http, user, db, 30)
    with connect_sse(
        http,
        "GET",
        f"/workflows/{workflow_id}/jobs/{job_id}/logs/stream",
        headers={**user, "Last-Event-ID": "9"},
    ) as source:
        events = [e for e in source.iter_sse() if e.event in {"log", "end"}]
    assert [e.event for e in events] == ["log"] * 20 + ["end"]
    assert [int(e.id) for e in events[:-1]] == list(range(10, 30))
    assert json.loads(events[-1].data) == {"last_seq": 29}


def test_sse_goes_live_then_ends(
    http: httpx.Client, user: dict[str, str], db: Any, server: RunningServer
) -> None:
    _, job_id = job_with_lines(http, user, db, 3, finished=False)
    publisher = redis.Redis.from_url(server.settings.redis_url)

    def produce() -> None:
        time.sleep(0.5)
        add_lines(db, job_id, range(3, 6))  # stored first, then published, like the processor
        publisher.publish(live_channel(job_id), encode_live_lines(log_lines(range(3, 6))))
        time.sleep(0.3)
        db.execute(
            "UPDATE jobs SET status = 'COMPLETED', finished_at = now(), logs_last_seq = 5, "
            "logs_closed_at = now() WHERE id = %s",
            (job_id,),
        )
        publisher.publish(live_channel(job_id), encode_live_end(5))

    thread = threading.Thread(target=produce)
    thread.start()
    with connect_sse(http, "GET", f"/jobs/{job_id}/logs/stream", headers=user) as source:
        # Keep-alive comments surface as empty "message" events in httpx-sse: not ours to count.
        events = [(e.event, e.id) for e in source.iter_sse() if e.event in {"log", "end"}]
    thread.join()
    publisher.close()
    # The end event carries no id of its own; the last one (5) stays the one to resume from.
    assert events == [("log", str(s)) for s in range(6)] + [("end", "5")]


def test_sse_waits_for_an_earlier_batch_committed_after_a_later_one(
    http: httpx.Client, user: dict[str, str], db: Any, server: RunningServer
) -> None:
    # The log processor writes batches concurrently: lines 5..9 and the end marker can commit
    # before lines 3..4. The stream must wait for them rather than skip them.
    _, job_id = job_with_lines(http, user, db, 3, finished=False)
    add_lines(db, job_id, range(5, 10))
    db.execute(
        "UPDATE jobs SET status = 'COMPLETED', finished_at = now(), logs_last_seq = 9, "
        "logs_closed_at = now() WHERE id = %s",
        (job_id,),
    )
    publisher = redis.Redis.from_url(server.settings.redis_url)

    def late_batch() -> None:
        time.sleep(0.5)
        add_lines(db, job_id, range(3, 5))
        publisher.publish(live_channel(job_id), encode_live_lines(log_lines(range(3, 5))))

    thread = threading.Thread(target=late_batch)
    thread.start()
    with connect_sse(http, "GET", f"/jobs/{job_id}/logs/stream", headers=user) as source:
        events = [(e.event, e.id) for e in source.iter_sse() if e.event in {"log", "end"}]
    thread.join()
    publisher.close()
    assert events == [("log", str(s)) for s in range(10)] + [("end", "9")]


def test_a_bad_last_event_id_is_422(http: httpx.Client, user: dict[str, str], db: Any) -> None:
    _, job_id = job_with_lines(http, user, db, 1)
    response = http.get(f"/jobs/{job_id}/logs/stream", headers={**user, "Last-Event-ID": "x"})
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == "Last-Event-ID"


def test_grpc_stream(
    http: httpx.Client, user: dict[str, str], db: Any, grpc_channel: grpc.Channel
) -> None:
    workflow_id, job_id = job_with_lines(http, user, db, 4)
    stub = jobs_pb2_grpc.JobServiceStub(grpc_channel)
    metadata = (("authorization", user["Authorization"]),)
    events = list(
        stub.StreamLogs(
            jobs_pb2.StreamLogsRequest(workflow_id=workflow_id, job_id=job_id, after_seq=1),
            metadata=metadata,
        )
    )
    assert [e.line.seq for e in events[:-1]] == [2, 3]
    assert events[-1].WhichOneof("event") == "end" and events[-1].end.last_seq == 3
    with pytest.raises(grpc.RpcError) as info:
        list(
            stub.StreamLogs(
                jobs_pb2.StreamLogsRequest(workflow_id=workflow_id, job_id="nope"),
                metadata=metadata,
            )
        )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_cli_prints_and_follows_logs(
    http: httpx.Client, user: dict[str, str], db: Any, server: RunningServer
) -> None:
    _, job_id = job_with_lines(http, user, db, 3)
    env = {
        "CHRONOVERSE_SERVER_URL": server.http_url,
        "CHRONOVERSE_TOKEN": user["Authorization"].split()[1],
    }
    printed = CliRunner().invoke(cli, ["logs", job_id, "--streams"], env=env)
    assert printed.exit_code == 0, printed.output
    assert printed.output.splitlines() == ["stdout line 0", "stderr line 1", "stdout line 2"]
    followed = CliRunner().invoke(cli, ["logs", job_id, "-f", "--streams"], env=env)
    assert followed.exit_code == 0 and followed.output == printed.output


def test_an_idle_stream_sends_keep_alive_comments(
    http: httpx.Client, user: dict[str, str], db: Any
) -> None:
    _, job_id = job_with_lines(http, user, db, 1, finished=False)
    comments = 0
    with http.stream("GET", f"/jobs/{job_id}/logs/stream", headers=user) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith(":"):
                comments += 1
                if comments == 2:
                    break
    assert comments == 2
