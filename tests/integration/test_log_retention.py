"""The `retain_logs` switch end to end: a workflow created over HTTP, its job's lines shipped
through the real broker to the log processor, followed live over SSE by the real server, then
deleted after the grace period when the workflow keeps no logs, and kept when it does (the
default)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

import httpx
import psycopg
import pytest
from httpx_sse import connect_sse
from psycopg.rows import dict_row

from chronoverse.domain import Topic
from chronoverse.kafka.admin import delete_topics, ensure_topics
from chronoverse.kafka.producer import StreamingProducer
from chronoverse.postgres import create_pool
from services.log_processor.retention import LogPurger
from services.log_processor.settings import Settings
from services.log_processor.worker import LogProcessorWorker
from tests.conftest import wait_until
from tests.factories import make_user, make_workflow
from tests.integration.conftest import RunningServer
from tests.integration.test_log_processor import lines, ship, stored

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

GRACE_S = 5.0


@pytest.fixture
def settings(
    environ: Mapping[str, str], server: RunningServer, kafka_settings: Any
) -> Iterator[Settings]:
    """A log processor on the server's database (so the server's SSE reads what it stores)."""
    settings = Settings.from_environ(
        {
            **environ,
            "CHRONOVERSE_DATABASE_URL": server.database_url,
            "CHRONOVERSE_KAFKA_TOPIC_PREFIX": f"t{uuid.uuid4().hex[:8]}.",
            "CHRONOVERSE_LOG_PURGE_GRACE_S": str(GRACE_S),
            "CHRONOVERSE_LOG_PURGE_INTERVAL_S": "0.2",
        }
    )
    ensure_topics(settings, [settings.topic(Topic.JOB_LOGS)], partitions=1)
    yield settings
    delete_topics(settings, [settings.topic(Topic.JOB_LOGS)])


@pytest.fixture
def db(server: RunningServer) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(server.database_url, autocommit=True) as conn:
        yield conn


@pytest.fixture
def producer(settings: Settings) -> Iterator[StreamingProducer]:
    producer = StreamingProducer(settings, client_id="test-retention", delivery_timeout_s=10)
    yield producer
    producer.close()


@pytest.fixture
def processor(settings: Settings) -> Iterator[None]:
    stop = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            LogProcessorWorker(settings).run(stop)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join(timeout=40)
    assert not thread.is_alive() and not errors, errors


def running_job(
    http: httpx.Client, auth: dict[str, str], db: Any, **workflow: Any
) -> tuple[str, uuid.UUID]:
    """A RUNNING job (attempt 1) of a new CONTAINER workflow; the stream path and the job id."""
    created = http.post(
        "/workflows",
        headers=auth,
        json={
            "name": "box",
            "kind": "CONTAINER",
            "interval": 60,
            "payload": {"image": "busybox"},
            **workflow,
        },
    ).json()
    job_id = db.execute(
        "INSERT INTO jobs (workflow_id, user_id, trigger, scheduled_at, status, attempt, "
        "started_at) SELECT id, user_id, 'MANUAL', now(), 'RUNNING', 1, now() "
        "FROM workflows WHERE id = %s RETURNING id",
        (created["id"],),
    ).fetchone()[0]
    return f"/workflows/{created['id']}/jobs/{job_id}/logs/stream", job_id


class Viewer:
    """A live viewer over SSE on a thread, until the stream's end."""

    def __init__(self, server: RunningServer, auth: dict[str, str], path: str, **headers: str):
        self.lines: list[str] = []
        self.end: dict[str, Any] | None = None
        self.connected = threading.Event()

        def watch() -> None:
            with (
                httpx.Client(base_url=server.http_url, timeout=30) as client,
                connect_sse(client, "GET", path, headers={**auth, **headers}) as source,
            ):
                self.connected.set()
                for event in source.iter_sse():
                    if event.event == "log":
                        self.lines.append(json.loads(event.data)["line"])
                    elif event.event == "end":
                        self.end = json.loads(event.data)
                        return

        self._thread = threading.Thread(target=watch, daemon=True)
        self._thread.start()
        assert self.connected.wait(10)

    def result(self, timeout_s: float = 30) -> tuple[list[str], dict[str, Any]]:
        self._thread.join(timeout_s)
        assert not self._thread.is_alive() and self.end is not None, "the stream did not end"
        return self.lines, self.end


def finish(db: Any, job_id: uuid.UUID) -> None:
    """What the execution worker records when the container exits."""
    db.execute("UPDATE jobs SET status = 'COMPLETED', finished_at = now() WHERE id = %s", (job_id,))


def purged(db: Any, job_id: uuid.UUID) -> Any:
    return db.execute("SELECT logs_purged_attempt FROM jobs WHERE id = %s", (job_id,)).fetchone()[0]


def test_lines_not_retained_reach_live_viewers_then_are_deleted(
    settings: Settings,
    server: RunningServer,
    http: httpx.Client,
    user: dict[str, str],
    db: Any,
    producer: StreamingProducer,
    processor: None,
) -> None:
    path, dropped = running_job(http, user, db, retain_logs=False)
    _, kept = running_job(http, user, db)  # the default: retain_logs true
    viewer = Viewer(server, user, path)
    printed = lines("out", 300)
    ship(producer, settings, dropped, 1, printed)
    ship(producer, settings, kept, 1, lines("kept", 50))
    finish(db, dropped)
    finish(db, kept)

    # The live viewer saw every line, and a whole log.
    seen, end = viewer.result()
    assert seen == [x.line for x in printed]
    assert end == {"attempt": 1, "last_seq": 299, "incomplete": False}
    # Within the grace, a viewer whose connection dropped resumes after its last line.
    assert len(stored(db, dropped)) == 300
    resumed, end = Viewer(server, user, path, **{"Last-Event-ID": "1.149"}).result()
    assert resumed == [x.line for x in printed[150:]] and end["last_seq"] == 299

    # Then the lines are gone, and the job records it.
    wait_until(lambda: stored(db, dropped) == [], timeout_s=30, message="the lines to be purged")
    assert purged(db, dropped) == 1
    # A viewer who comes later ends at once rather than waiting for lines that will not come.
    started = time.monotonic()
    late, end = Viewer(server, user, path).result(timeout_s=8)
    assert late == [] and not end["incomplete"] and time.monotonic() - started < 5
    assert http.get(path.removesuffix("/stream"), headers=user).json()["logs"] == []

    # The default keeps every line, well past the grace.
    assert len(stored(db, kept)) == 50 and purged(db, kept) is None


def test_switching_back_to_retain_before_the_grace_keeps_the_lines(
    settings: Settings,
    http: httpx.Client,
    user: dict[str, str],
    db: Any,
    producer: StreamingProducer,
    processor: None,
) -> None:
    path, job_id = running_job(http, user, db, retain_logs=False)
    ship(producer, settings, job_id, 1, lines("out", 20))
    wait_until(
        lambda: db.execute(
            "SELECT logs_purge_after IS NOT NULL FROM jobs WHERE id = %s", (job_id,)
        ).fetchone()[0],
        message="the purge to be scheduled",
    )
    workflow_id = path.split("/")[2]
    response = http.put(f"/workflows/{workflow_id}", headers=user, json={"retain_logs": True})
    assert response.status_code == 200, response.text
    wait_until(
        lambda: db.execute(
            "SELECT logs_purge_after IS NULL FROM jobs WHERE id = %s", (job_id,)
        ).fetchone()[0],
        timeout_s=30,
        message="the due purge to be handled",
    )
    assert len(stored(db, job_id)) == 20 and purged(db, job_id) is None


def test_a_due_purge_deletes_lines_in_bounded_statements(
    environ: Mapping[str, str], database_url: str
) -> None:
    """A job with more lines than a statement deletes goes in several statements; the jobs are
    marked purged once their lines are gone, and another attempt's lines and a retaining
    workflow's lines stay."""
    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as conn:
        user = make_user(conn)
        dropping = make_workflow(conn, user, next_run_at="infinity")
        keeping = make_workflow(conn, user, next_run_at="infinity")
        conn.execute("UPDATE workflows SET retain_logs = false WHERE id = %s", (dropping,))
        jobs = {}
        for name, workflow, lines_of in (("big", dropping, 250), ("small", dropping, 30),
                                         ("kept", keeping, 40)):  # fmt: skip
            jobs[name] = conn.execute(
                "INSERT INTO jobs (workflow_id, user_id, trigger, scheduled_at, status, attempt, "
                "finished_at, logs_purge_after, logs_purge_attempt) "
                "VALUES (%s, %s, 'MANUAL', now(), 'COMPLETED', 2, now(), now() - interval '1s', 1) "
                "RETURNING id",
                (workflow, user),
            ).fetchone()["id"]
            conn.execute(
                "INSERT INTO job_logs (job_id, attempt, seq, stream, ts, line) "
                "SELECT %s, a, s, 'stdout', now(), 'x' FROM generate_series(1, 2) AS a, "
                "generate_series(0, %s - 1) AS s",
                (jobs[name], lines_of),
            )
        settings = Settings.from_environ({**environ, "CHRONOVERSE_DATABASE_URL": database_url})
        pool = create_pool(settings, name="test-log-purge")
        try:
            result = LogPurger(pool, interval_s=1, batch_lines=100).purge_due()
        finally:
            pool.close()

        # Attempt 1's lines of the two jobs that keep none: 280, at most 100 a statement.
        assert (result.jobs, result.lines, result.largest_batch) == (3, 280, 100)
        left = conn.execute(
            "SELECT job_id, attempt, count(*) AS n FROM job_logs GROUP BY job_id, attempt"
        ).fetchall()
        assert {(r["job_id"], r["attempt"]): r["n"] for r in left} == {
            (jobs["big"], 2): 250,
            (jobs["small"], 2): 30,
            (jobs["kept"], 1): 40,
            (jobs["kept"], 2): 40,
        }
        marks = conn.execute(
            "SELECT id, logs_purged_attempt, logs_purge_after FROM jobs WHERE id = ANY(%s)",
            (list(jobs.values()),),
        ).fetchall()
        assert {r["id"]: (r["logs_purged_attempt"], r["logs_purge_after"]) for r in marks} == {
            jobs["big"]: (1, None),
            jobs["small"]: (1, None),
            jobs["kept"]: (None, None),
        }
