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
    http: httpx.Client,
    auth: dict[str, str],
    db: Any,
    count: int,
    *,
    finished: bool = True,
    attempt: int = 1,
    closed: bool = True,
    finished_ago: str = "0 s",
) -> tuple[str, str]:
    """A CONTAINER job on ``attempt`` with lines 0..count-1 of that attempt stored (and, when
    finished and ``closed``, its end marker)."""
    workflow = http.post(
        "/workflows",
        headers=auth,
        json={"name": "box", "kind": "CONTAINER", "interval": 60, "payload": {"image": "busybox"}},
    ).json()
    status = "COMPLETED" if finished else "RUNNING"
    job_id = db.execute(
        "INSERT INTO jobs (workflow_id, user_id, trigger, scheduled_at, status, attempt, "
        "started_at, finished_at) "
        "SELECT id, user_id, 'MANUAL', now(), %s, %s, now() - %s::interval, "
        "CASE WHEN %s THEN now() - %s::interval END FROM workflows WHERE id = %s RETURNING id",
        (status, attempt, finished_ago, finished, finished_ago, workflow["id"]),
    ).fetchone()[0]
    add_lines(db, job_id, range(count), attempt=attempt)
    if finished and closed:
        close_logs(db, job_id, attempt, count - 1)
    return workflow["id"], str(job_id)


def add_lines(db: Any, job_id: Any, seqs: range, *, attempt: int = 1) -> None:
    for seq in seqs:
        db.execute(
            "INSERT INTO job_logs (job_id, attempt, seq, stream, ts, line) "
            "VALUES (%s, %s, %s, %s, %s, %s)",
            (
                job_id,
                attempt,
                seq,
                "stdout" if seq % 2 == 0 else "stderr",
                datetime.now(UTC),
                line_text(attempt, seq),
            ),
        )


def line_text(attempt: int, seq: int) -> str:
    return f"line {seq}" if attempt == 1 else f"attempt {attempt} line {seq}"


def close_logs(db: Any, job_id: Any, attempt: int, last_seq: int) -> None:
    """What the log processor does with an attempt's end marker."""
    db.execute(
        "UPDATE jobs SET logs_attempt = %s, logs_last_seq = %s, logs_closed_at = now() "
        "WHERE id = %s",
        (attempt, last_seq, job_id),
    )


def log_lines(seqs: range, *, attempt: int = 1) -> list[LogLine]:
    """The lines :func:`add_lines` stores, as the log processor publishes them."""
    return [
        LogLine(
            seq=seq,
            stream=LogStream.STDOUT if seq % 2 == 0 else LogStream.STDERR,
            ts=datetime.now(UTC),
            line=line_text(attempt, seq),
        )
        for seq in seqs
    ]


def retried_job(http: httpx.Client, auth: dict[str, str], db: Any) -> tuple[str, str]:
    """A finished job whose attempt 1 printed lines 0..4 and attempt 2 lines 0..2 (both ended)."""
    workflow_id, job_id = job_with_lines(http, auth, db, 5)
    db.execute("UPDATE jobs SET attempt = 2 WHERE id = %s", (job_id,))
    add_lines(db, job_id, range(3), attempt=2)
    close_logs(db, job_id, 2, 2)
    return workflow_id, job_id


def sse(
    http: httpx.Client, path: str, headers: dict[str, str], **params: Any
) -> list[tuple[str, str, Any]]:
    """A stream's log, attempt and end events until it ends: (event, id, data)."""
    with connect_sse(http, "GET", path, headers=headers, params=params) as source:
        return [
            (e.event, e.id, json.loads(e.data))
            for e in source.iter_sse()
            if e.event in {"log", "attempt", "end"}
        ]


def ids(events: list[tuple[str, str, Any]]) -> list[str]:
    return [f"{event}:{id_}" for event, id_, _ in events]


def test_pages_oldest_first_with_a_stream_filter(
    http: httpx.Client, user: dict[str, str], db: Any
) -> None:
    workflow_id, job_id = job_with_lines(http, user, db, 5)
    first = http.get(
        f"/workflows/{workflow_id}/jobs/{job_id}/logs", headers=user, params={"limit": 3}
    ).json()
    assert [x["seq"] for x in first["logs"]] == [0, 1, 2]
    assert set(first["logs"][0]) == {"attempt", "seq", "stream", "ts", "line"}
    assert first["attempt"] == 1 and first["next_cursor"] == "1.2" and not first["incomplete"]
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
    # A plain integer Last-Event-ID (from a client of before attempts) is a seq of the latest.
    assert [e.event for e in events] == ["log"] * 20 + ["end"]
    assert [e.id for e in events[:-1]] == [f"1.{seq}" for seq in range(10, 30)]
    assert json.loads(events[-1].data) == {"attempt": 1, "last_seq": 29, "incomplete": False}


def test_sse_goes_live_then_ends(
    http: httpx.Client, user: dict[str, str], db: Any, server: RunningServer
) -> None:
    _, job_id = job_with_lines(http, user, db, 3, finished=False)
    publisher = redis.Redis.from_url(server.settings.redis_url)

    def produce() -> None:
        time.sleep(0.5)
        add_lines(db, job_id, range(3, 6))  # stored first, then published, like the processor
        publisher.publish(
            live_channel(job_id), encode_live_lines(log_lines(range(3, 6)), attempt=1)
        )
        time.sleep(0.3)
        db.execute(
            "UPDATE jobs SET status = 'COMPLETED', finished_at = now(), logs_last_seq = 5, "
            "logs_closed_at = now() WHERE id = %s",
            (job_id,),
        )
        publisher.publish(live_channel(job_id), encode_live_end(5, attempt=1))

    thread = threading.Thread(target=produce)
    thread.start()
    with connect_sse(http, "GET", f"/jobs/{job_id}/logs/stream", headers=user) as source:
        # Keep-alive comments surface as empty "message" events in httpx-sse: not ours to count.
        events = [(e.event, e.id) for e in source.iter_sse() if e.event in {"log", "end"}]
    thread.join()
    publisher.close()
    # The end event carries no id of its own; the last one (1.5) stays the one to resume from.
    assert events == [("log", f"1.{s}") for s in range(6)] + [("end", "1.5")]


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
        publisher.publish(
            live_channel(job_id), encode_live_lines(log_lines(range(3, 5)), attempt=1)
        )

    thread = threading.Thread(target=late_batch)
    thread.start()
    with connect_sse(http, "GET", f"/jobs/{job_id}/logs/stream", headers=user) as source:
        events = [(e.event, e.id) for e in source.iter_sse() if e.event in {"log", "end"}]
    thread.join()
    publisher.close()
    assert events == [("log", f"1.{s}") for s in range(10)] + [("end", "1.9")]


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
    assert [(e.line.attempt, e.line.seq) for e in events[:-1]] == [(1, 2), (1, 3)]
    assert events[-1].WhichOneof("event") == "end" and events[-1].end.last_seq == 3
    assert events[-1].end.attempt == 1 and not events[-1].end.incomplete
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


# --- attempts ----------------------------------------------------------------------------------


def test_pages_show_the_latest_attempt_and_an_earlier_one_on_request(
    http: httpx.Client, user: dict[str, str], db: Any
) -> None:
    workflow_id, job_id = retried_job(http, user, db)
    latest = http.get(f"/jobs/{job_id}/logs", headers=user).json()
    assert latest["attempt"] == 2
    assert [(x["attempt"], x["line"]) for x in latest["logs"]] == [
        (2, f"attempt 2 line {s}") for s in range(3)
    ]
    path = f"/workflows/{workflow_id}/jobs/{job_id}/logs"
    first = http.get(path, headers=user, params={"attempt": 1, "limit": 3}).json()
    assert first["attempt"] == 1 and [x["line"] for x in first["logs"]] == [
        f"line {s}" for s in range(3)
    ]
    # The cursor names its attempt: the next page stays on attempt 1.
    assert first["next_cursor"] == "1.2"
    rest = http.get(path, headers=user, params={"cursor": first["next_cursor"]}).json()
    assert rest["attempt"] == 1 and [x["seq"] for x in rest["logs"]] == [3, 4]
    # A plain seq cursor (from before attempts) is a seq of the attempt asked for, or the latest.
    plain = http.get(path, headers=user, params={"cursor": "0"}).json()
    assert [(x["attempt"], x["seq"]) for x in plain["logs"]] == [(2, 1), (2, 2)]
    bad: list[tuple[dict[str, Any], str]] = [
        ({"attempt": 3}, "attempt"),
        ({"attempt": 0}, "attempt"),
        ({"attempt": 2, "cursor": "1.2"}, "cursor"),
        ({"cursor": "1.x"}, "cursor"),
    ]
    for params, field in bad:
        response = http.get(path, headers=user, params=params)
        assert response.status_code == 422, params
        assert response.json()["error"]["details"][0]["field"] == field


def test_sse_follows_a_retry_across_a_visible_boundary(
    http: httpx.Client, user: dict[str, str], db: Any, server: RunningServer
) -> None:
    # Attempt 1 prints 0..4 and ends; the job is retried, and attempt 2 prints 0..2 live. The
    # viewer sees attempt 1 whole, an `attempt` event, then attempt 2 from its first line.
    _, job_id = job_with_lines(http, user, db, 3, finished=False)
    publisher = redis.Redis.from_url(server.settings.redis_url)

    def produce() -> None:
        time.sleep(0.5)
        add_lines(db, job_id, range(3, 5))
        publisher.publish(
            live_channel(job_id), encode_live_lines(log_lines(range(3, 5)), attempt=1)
        )
        close_logs(db, job_id, 1, 4)
        publisher.publish(live_channel(job_id), encode_live_end(4, attempt=1))
        time.sleep(0.3)
        db.execute("UPDATE jobs SET attempt = 2, started_at = now() WHERE id = %s", (job_id,))
        time.sleep(0.3)
        add_lines(db, job_id, range(3), attempt=2)
        two = encode_live_lines(log_lines(range(3), attempt=2), attempt=2)
        publisher.publish(live_channel(job_id), two)
        time.sleep(0.3)
        db.execute(
            "UPDATE jobs SET status = 'COMPLETED', finished_at = now() WHERE id = %s", (job_id,)
        )
        close_logs(db, job_id, 2, 2)
        publisher.publish(live_channel(job_id), encode_live_end(2, attempt=2))

    thread = threading.Thread(target=produce)
    thread.start()
    events = sse(http, f"/jobs/{job_id}/logs/stream", user)
    thread.join()
    publisher.close()
    assert ids(events) == [f"log:1.{s}" for s in range(5)] + ["attempt:2.-1"] + [
        f"log:2.{s}" for s in range(3)
    ] + ["end:2.2"]
    assert [data["line"] for event, _, data in events if event == "log"] == [
        *(f"line {s}" for s in range(5)),
        *(f"attempt 2 line {s}" for s in range(3)),
    ]
    assert events[5][2] == {"attempt": 2}
    assert events[-1][2] == {"attempt": 2, "last_seq": 2, "incomplete": False}


def test_an_attempt_whose_worker_died_is_shown_whole_before_the_next(
    http: httpx.Client, user: dict[str, str], db: Any
) -> None:
    # Attempt 1 never sent its end marker (its worker was killed); attempt 2 ran and ended.
    _, job_id = job_with_lines(http, user, db, 4, closed=False)
    db.execute("UPDATE jobs SET attempt = 2 WHERE id = %s", (job_id,))
    add_lines(db, job_id, range(2), attempt=2)
    close_logs(db, job_id, 2, 1)
    events = sse(http, f"/jobs/{job_id}/logs/stream", user, attempt=1)
    assert ids(events) == [f"log:1.{s}" for s in range(4)] + [
        "attempt:2.-1",
        "log:2.0",
        "log:2.1",
        "end:2.1",
    ]


def test_last_event_id_resumes_across_an_attempt_boundary(
    http: httpx.Client, user: dict[str, str], db: Any
) -> None:
    _, job_id = retried_job(http, user, db)
    path = f"/jobs/{job_id}/logs/stream"
    # Resume inside attempt 1: the rest of it, the boundary, then attempt 2.
    events = sse(http, path, {**user, "Last-Event-ID": "1.3"})
    assert ids(events) == ["log:1.4", "attempt:2.-1", "log:2.0", "log:2.1", "log:2.2", "end:2.2"]
    # Resume right after the boundary: attempt 2 only, no second boundary.
    events = sse(http, path, {**user, "Last-Event-ID": "2.-1"})
    assert ids(events) == ["log:2.0", "log:2.1", "log:2.2", "end:2.2"]
    # A plain integer is a seq of the latest attempt (or of `attempt`).
    assert ids(sse(http, path, {**user, "Last-Event-ID": "0"})) == ["log:2.1", "log:2.2", "end:2.2"]
    events = sse(http, path, {**user, "Last-Event-ID": "3"}, attempt=1)
    assert ids(events)[:2] == ["log:1.4", "attempt:2.-1"]
    # By default the stream shows the latest attempt.
    assert ids(sse(http, path, user)) == ["log:2.0", "log:2.1", "log:2.2", "end:2.2"]
    bad = http.get(path, headers={**user, "Last-Event-ID": "0.4"})
    assert bad.status_code == 422
    assert bad.json()["error"]["details"][0]["field"] == "Last-Event-ID"


def test_grpc_stream_marks_the_attempt_boundary(
    http: httpx.Client, user: dict[str, str], db: Any, grpc_channel: grpc.Channel
) -> None:
    workflow_id, job_id = retried_job(http, user, db)
    stub = jobs_pb2_grpc.JobServiceStub(grpc_channel)
    metadata = (("authorization", user["Authorization"]),)
    request = jobs_pb2.StreamLogsRequest(
        workflow_id=workflow_id, job_id=job_id, attempt=1, after_seq=2
    )
    events = list(stub.StreamLogs(request, metadata=metadata))
    kinds = [e.WhichOneof("event") for e in events]
    assert kinds == ["line", "line", "attempt", "line", "line", "line", "end"]
    assert [(e.line.attempt, e.line.seq) for e in events if e.HasField("line")] == [
        (1, 3),
        (1, 4),
        (2, 0),
        (2, 1),
        (2, 2),
    ]
    assert events[2].attempt.attempt == 2
    latest = list(
        stub.StreamLogs(
            jobs_pb2.StreamLogsRequest(workflow_id=workflow_id, job_id=job_id), metadata=metadata
        )
    )
    assert [e.line.line for e in latest[:-1]] == [f"attempt 2 line {s}" for s in range(3)]
    with pytest.raises(grpc.RpcError) as info:
        list(
            stub.StreamLogs(
                jobs_pb2.StreamLogsRequest(workflow_id=workflow_id, job_id=job_id, attempt=3),
                metadata=metadata,
            )
        )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_cli_prints_the_latest_attempt_and_says_there_are_earlier_ones(
    http: httpx.Client, user: dict[str, str], db: Any, server: RunningServer
) -> None:
    _, job_id = retried_job(http, user, db)
    env = {
        "CHRONOVERSE_SERVER_URL": server.http_url,
        "CHRONOVERSE_TOKEN": user["Authorization"].split()[1],
    }
    printed = CliRunner().invoke(cli, ["logs", job_id, "--streams"], env=env)
    assert printed.exit_code == 0, printed.output
    assert printed.stdout.splitlines() == [
        "stdout attempt 2 line 0",
        "stderr attempt 2 line 1",
        "stdout attempt 2 line 2",
    ]
    assert "attempt 2 (the latest); earlier attempts: --attempt 1" in printed.stderr
    first = CliRunner().invoke(cli, ["logs", job_id, "--attempt", "1"], env=env)
    assert first.exit_code == 0 and first.stdout.splitlines() == ["line 0", "line 2", "line 4"]
    followed = CliRunner().invoke(cli, ["logs", job_id, "-f", "--attempt", "1"], env=env)
    assert followed.exit_code == 0, followed.output
    shown = ["line 0", "line 2", "line 4", "attempt 2 line 0", "attempt 2 line 2"]
    assert followed.stdout.splitlines() == shown
    assert "attempt 2 begins" in followed.stderr


# --- missing logs say so -----------------------------------------------------------------------


def test_a_finished_job_without_its_end_marker_ends_incomplete(
    http: httpx.Client,
    user: dict[str, str],
    db: Any,
    grpc_channel: grpc.Channel,
    server: RunningServer,
) -> None:
    # The job finished two minutes ago, and its end marker never arrived (its worker died while
    # shipping): the log ends, and says it is incomplete, on every edge.
    workflow_id, job_id = job_with_lines(http, user, db, 3, closed=False, finished_ago="2 min")
    events = sse(http, f"/jobs/{job_id}/logs/stream", user)
    assert ids(events) == ["log:1.0", "log:1.1", "log:1.2", "end:1.2"]
    assert events[-1][2] == {"attempt": 1, "last_seq": 2, "incomplete": True}

    stub = jobs_pb2_grpc.JobServiceStub(grpc_channel)
    metadata = (("authorization", user["Authorization"]),)
    request = jobs_pb2.StreamLogsRequest(workflow_id=workflow_id, job_id=job_id)
    end = list(stub.StreamLogs(request, metadata=metadata))[-1]
    assert end.WhichOneof("event") == "end"
    assert (end.end.attempt, end.end.last_seq, end.end.incomplete) == (1, 2, True)

    page = http.get(f"/jobs/{job_id}/logs", headers=user).json()
    assert page["incomplete"] is True and len(page["logs"]) == 3

    env = {
        "CHRONOVERSE_SERVER_URL": server.http_url,
        "CHRONOVERSE_TOKEN": user["Authorization"].split()[1],
    }
    for args in (["logs", job_id, "-f"], ["logs", job_id]):
        result = CliRunner().invoke(cli, args, env=env)
        assert result.exit_code == 3, result.output
        assert result.stdout.splitlines() == ["line 0", "line 2"]  # stderr lines go to stderr
        assert f"the log of job {job_id} (attempt 1) is incomplete" in result.stderr


def test_a_log_recorded_as_incomplete_says_so_and_the_job_records_it(
    http: httpx.Client, user: dict[str, str], db: Any, grpc_channel: grpc.Channel
) -> None:
    # The shipper lost lines: the end marker came, and the job records the gap.
    workflow_id, job_id = job_with_lines(http, user, db, 2)
    db.execute("UPDATE jobs SET logs_incomplete = true WHERE id = %s", (job_id,))
    events = sse(http, f"/jobs/{job_id}/logs/stream", user)
    assert events[-1] == ("end", "1.1", {"attempt": 1, "last_seq": 1, "incomplete": True})
    job = http.get(f"/workflows/{workflow_id}/jobs/{job_id}", headers=user).json()
    assert job["logs_incomplete"] is True
    stub = jobs_pb2_grpc.JobServiceStub(grpc_channel)
    metadata = (("authorization", user["Authorization"]),)
    got = stub.GetJob(jobs_pb2.GetJobRequest(workflow_id=workflow_id, id=job_id), metadata=metadata)
    assert got.logs_incomplete is True
    _, whole = job_with_lines(http, user, db, 2)
    assert http.get(f"/jobs/{whole}/logs", headers=user).json()["incomplete"] is False
