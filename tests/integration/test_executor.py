"""The executor and its job store against real Postgres: claims, outcomes, failure counting,
fencing, recovery, and the liveness predicate that the claim shares with Python."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import IPv4Network
from typing import Any
from uuid import UUID

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from chronoverse.domain import WorkflowKind
from chronoverse.egress import EgressPolicy
from chronoverse.jobs import JobMessage
from chronoverse.kafka.consumer import Record
from chronoverse.payloads import is_liveness
from chronoverse.postgres import Pool, create_pool
from chronoverse.scheduling import RetryPolicy, RunResult, decide_outcome
from chronoverse.secrets import SecretBox, generate_key, seal_payload
from chronoverse.settings import PostgresSettings
from services.execution_worker.executor import Executor
from services.execution_worker.leases import LeaseBook, LeaseKeeper
from services.execution_worker.store import JobStore
from tests.conftest import wait_until
from tests.factories import Endpoint, make_user, make_workflow

pytestmark = pytest.mark.integration

POLICY = RetryPolicy(max_attempts=2, base_delay_s=0, max_delay_s=0)
# The endpoints are local test servers.
EGRESS = EgressPolicy(allow=(IPv4Network("127.0.0.0/8"),))
# HEARTBEAT header values are stored sealed with this key, as the server would store them.
SECRETS = SecretBox([generate_key()])


@pytest.fixture
def pool(database_url: str) -> Iterator[Pool]:
    pool = create_pool(PostgresSettings(database_url=database_url), name="test")
    yield pool
    pool.close()


@pytest.fixture
def conn(database_url: str) -> Iterator[psycopg.Connection[dict[str, Any]]]:
    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as conn:
        yield conn


@pytest.fixture
def store(pool: Pool) -> JobStore:
    return JobStore(pool, owner="test-worker", lease_s=30)


@pytest.fixture
def executor(store: JobStore) -> Iterator[Executor]:
    with httpx.Client() as http:
        executor = Executor(
            store=store,
            leases=LeaseBook(),
            policy=POLICY,
            http=http,
            egress=EGRESS,
            secrets=SECRETS,
            concurrency=4,
        )
        yield executor
        executor.close()


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    with Endpoint().serving() as served:
        yield served


def queue_job(
    conn: psycopg.Connection[dict[str, Any]], workflow_id: UUID, trigger: str = "MANUAL"
) -> JobMessage:
    row = conn.execute(
        "INSERT INTO jobs (workflow_id, user_id, trigger, scheduled_at, status, queued_at) "
        "SELECT id, user_id, %s, now(), 'QUEUED', now() FROM workflows WHERE id = %s RETURNING id",
        (trigger, workflow_id),
    ).fetchone()
    assert row is not None
    return JobMessage(job_id=row["id"], workflow_id=workflow_id)


def job(conn: psycopg.Connection[dict[str, Any]], job_id: UUID) -> dict[str, Any]:
    row = conn.execute("SELECT * FROM jobs WHERE id = %s", (job_id,)).fetchone()
    assert row is not None
    return row


def workflow(conn: psycopg.Connection[dict[str, Any]], workflow_id: UUID) -> dict[str, Any]:
    row = conn.execute("SELECT * FROM workflows WHERE id = %s", (workflow_id,)).fetchone()
    assert row is not None
    return row


def test_a_liveness_heartbeat_completes(conn: Any, executor: Executor) -> None:
    workflow_id = make_workflow(conn, make_user(conn))
    message = queue_job(conn, workflow_id)
    executor.execute(message)
    done = job(conn, message.job_id)
    assert done["status"] == "COMPLETED"
    assert done["attempt"] == 1 and done["lease_token"] == 1
    assert done["queued_at"] <= done["started_at"] <= done["finished_at"]
    assert done["lease_owner"] is None


def records(*messages: JobMessage) -> list[Record[JobMessage]]:
    return [
        Record(topic="jobs", partition=0, offset=n, key=None, value=m, timestamp_ms=None)
        for n, m in enumerate(messages)
    ]


def test_a_batch_runs_liveness_jobs_together_and_the_rest_one_by_one(
    conn: Any, executor: Executor, endpoint: Endpoint
) -> None:
    user_id = make_user(conn)
    failing = make_workflow(conn, user_id)
    conn.execute(
        "UPDATE workflows SET consecutive_job_failures_count = 2 WHERE id = %s", (failing,)
    )
    live = [queue_job(conn, failing), queue_job(conn, make_workflow(conn, user_id))]
    checked = queue_job(conn, make_workflow(conn, user_id, payload={"endpoint": endpoint.url}))
    done = queue_job(conn, make_workflow(conn, user_id))
    executor.execute(done)
    before = job(conn, done.job_id)

    executor.handle(records(*live, checked, done))

    for message in (*live, checked):
        ran = job(conn, message.job_id)
        assert (ran["status"], ran["attempt"]) == ("COMPLETED", 1)
        assert ran["started_at"] <= ran["finished_at"]
    # The empty-payload beats were claimed and finished by one write, which names the worker
    # (their history's `claimed` entry reads it); a job claimed then completed has no owner left.
    assert [job(conn, m.job_id)["lease_owner"] for m in (*live, checked)] == [
        "test-worker",
        "test-worker",
        None,
    ]
    assert endpoint.hits == 1
    assert job(conn, done.job_id) == before  # a duplicate changes nothing
    assert workflow(conn, failing)["consecutive_job_failures_count"] == 0
    assert executor.leases.snapshot() == {}


def one_of_each(
    conn: psycopg.Connection[dict[str, Any]], endpoint: Endpoint
) -> tuple[JobMessage, JobMessage, JobMessage, JobMessage]:
    """Queued jobs of one user: a liveness beat, an endpoint check, a CONTAINER job, and a beat
    of a workflow terminated since."""
    user_id = make_user(conn)
    live = queue_job(conn, make_workflow(conn, user_id))
    checked = queue_job(conn, make_workflow(conn, user_id, payload={"endpoint": endpoint.url}))
    container = queue_job(
        conn,
        make_workflow(conn, user_id, kind="CONTAINER", payload={"image": "local/busybox:latest"}),
    )
    terminated = make_workflow(conn, user_id)
    late = queue_job(conn, terminated)
    conn.execute(
        "UPDATE workflows SET terminated_at = now(), terminated_reason = 'by test' WHERE id = %s",
        (terminated,),
    )
    return live, checked, container, late


def test_only_liveness_jobs_are_claimed_together(
    conn: Any, executor: Executor, endpoint: Endpoint
) -> None:
    live, checked, container, late = one_of_each(conn, endpoint)

    claimed = executor.run_liveness([m.job_id for m in (live, checked, container, late)])

    assert claimed == {live.job_id}
    assert job(conn, live.job_id)["status"] == "COMPLETED"
    for message in (checked, container, late):
        assert (job(conn, message.job_id)["status"], job(conn, message.job_id)["attempt"]) == (
            "QUEUED",
            0,
        )
    assert endpoint.hits == 0


def test_a_batch_of_successes_is_fenced_by_each_lease(conn: Any, store: JobStore) -> None:
    user_id = make_user(conn)
    kept, lost = (queue_job(conn, make_workflow(conn, user_id)) for _ in range(2))
    claims = store.claim([kept.job_id, lost.job_id], liveness_only=True)
    assert {c.job_id for c in claims} == {kept.job_id, lost.job_id}
    # Another worker recovered one of them meanwhile: its token moved on.
    conn.execute("UPDATE jobs SET lease_token = lease_token + 1 WHERE id = %s", (lost.job_id,))

    assert [f.job_id for f in store.complete(claims)] == [kept.job_id]

    assert job(conn, kept.job_id)["status"] == "COMPLETED"
    assert (job(conn, lost.job_id)["status"], job(conn, lost.job_id)["lease_token"]) == (
        "RUNNING",
        2,
    )


def test_http_status_is_compared(conn: Any, executor: Executor, endpoint: Endpoint) -> None:
    workflow_id = make_workflow(
        conn, make_user(conn), payload={"endpoint": endpoint.url, "expected_status_code": 204}
    )
    endpoint.status = 204
    ok = queue_job(conn, workflow_id)
    executor.execute(ok)
    assert job(conn, ok.job_id)["status"] == "COMPLETED"
    endpoint.status = 200
    bad = queue_job(conn, workflow_id)
    executor.execute(bad)
    failed = job(conn, bad.job_id)
    assert (failed["status"], failed["failure_kind"]) == ("FAILED", "USER")
    assert "expected HTTP 204" in failed["error"] and "got 200" in failed["error"]


class HeaderRecorder:
    """A local HTTP server on 127.0.0.1 that answers 200 and keeps each request's headers."""

    def __init__(self) -> None:
        self.headers: list[dict[str, str]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.headers.append(dict(self.headers.items()))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/healthz"

    def __enter__(self) -> HeaderRecorder:
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)


def sealed_heartbeat(url: str, headers: dict[str, str], box: SecretBox = SECRETS) -> dict[str, Any]:
    """A HEARTBEAT payload as Postgres stores it: header values sealed."""
    return seal_payload(box, WorkflowKind.HEARTBEAT, {"endpoint": url, "headers": headers}, None)


def test_the_peer_receives_the_plain_header_values(conn: Any, executor: Executor) -> None:
    with HeaderRecorder() as server:
        payload = sealed_heartbeat(server.url, {"Authorization": "Bearer s3cret"})
        assert payload["headers"]["Authorization"].startswith("enc:v1:")
        workflow_id = make_workflow(conn, make_user(conn), payload=payload)
        message = queue_job(conn, workflow_id)
        executor.execute(message)
        assert job(conn, message.job_id)["status"] == "COMPLETED"
        [received] = server.headers
    assert received["Authorization"] == "Bearer s3cret"


def test_headers_sealed_with_another_key_are_a_user_failure(conn: Any, executor: Executor) -> None:
    with HeaderRecorder() as server:
        other = SecretBox([generate_key()])
        payload = sealed_heartbeat(server.url, {"Authorization": "Bearer s3cret"}, other)
        workflow_id = make_workflow(conn, make_user(conn), payload=payload)
        message = queue_job(conn, workflow_id)
        executor.execute(message)
        assert server.headers == []  # nothing sent
    failed = job(conn, message.job_id)
    assert (failed["status"], failed["failure_kind"]) == ("FAILED", "USER")
    assert failed["error"].startswith("cannot read the payload's secrets: ")
    assert "enc:v1:" not in failed["error"]


def test_an_invalid_stored_payload_does_not_echo_its_values(conn: Any, executor: Executor) -> None:
    # A header value with a line break no longer validates; the error must not quote it.
    payload = sealed_heartbeat("http://127.0.0.1:9/x", {"X-Token": "s3cret\r\nInjected: 1"})
    workflow_id = make_workflow(conn, make_user(conn), payload=payload)
    message = queue_job(conn, workflow_id)
    executor.execute(message)
    failed = job(conn, message.job_id)
    assert (failed["status"], failed["failure_kind"]) == ("FAILED", "USER")
    assert failed["error"].startswith("stored payload is invalid: payload.headers")
    assert "line break" in failed["error"]
    assert "s3cret" not in failed["error"] and "input" not in failed["error"]


def test_a_slow_endpoint_times_out(conn: Any, executor: Executor, endpoint: Endpoint) -> None:
    endpoint.delay_s = 3
    workflow_id = make_workflow(
        conn, make_user(conn), payload={"endpoint": endpoint.url, "timeout_seconds": 0.5}
    )
    message = queue_job(conn, workflow_id)
    executor.execute(message)
    failed = job(conn, message.job_id)
    assert (failed["status"], failed["failure_kind"], failed["error"]) == (
        "FAILED",
        "USER",
        "timed out after 0.5s",
    )


def test_consecutive_failures_terminate_the_workflow(
    conn: Any, executor: Executor, endpoint: Endpoint
) -> None:
    endpoint.status = 500
    workflow_id = make_workflow(
        conn, make_user(conn), payload={"endpoint": endpoint.url}, max_failures=3
    )
    for expected in (1, 2):
        executor.execute(queue_job(conn, workflow_id))
        assert workflow(conn, workflow_id)["consecutive_job_failures_count"] == expected
        assert workflow(conn, workflow_id)["terminated_at"] is None
    pending = conn.execute(
        "INSERT INTO jobs (workflow_id, user_id, trigger, scheduled_at, status) "
        "SELECT id, user_id, 'AUTOMATIC', now() + interval '1 minute', 'PENDING' FROM workflows "
        "WHERE id = %s RETURNING id",
        (workflow_id,),
    ).fetchone()["id"]
    executor.execute(queue_job(conn, workflow_id))
    terminated = workflow(conn, workflow_id)
    assert terminated["consecutive_job_failures_count"] == 3
    assert terminated["terminated_at"] is not None
    assert terminated["terminated_reason"].startswith("terminated after 3 consecutive failed jobs")
    assert "got 500" in terminated["terminated_reason"]
    assert job(conn, pending)["status"] == "CANCELED"
    events = [
        r["payload"]["type"]
        for r in conn.execute(
            "SELECT payload FROM outbox WHERE key = %s ORDER BY id", (str(workflow_id),)
        )
    ]
    assert events == ["workflow.terminated"]
    # A job of a terminated workflow is never claimed.
    late = queue_job(conn, workflow_id)
    executor.execute(late)
    assert job(conn, late.job_id)["status"] == "QUEUED"
    assert endpoint.hits == 3


def test_a_success_resets_the_count(conn: Any, executor: Executor, endpoint: Endpoint) -> None:
    workflow_id = make_workflow(
        conn, make_user(conn), payload={"endpoint": endpoint.url}, max_failures=2
    )
    for status in (500, 200, 500):
        endpoint.status = status
        executor.execute(queue_job(conn, workflow_id))
    state = workflow(conn, workflow_id)
    assert state["consecutive_job_failures_count"] == 1
    assert state["terminated_at"] is None


def test_the_same_message_twice_runs_once(
    conn: Any, executor: Executor, endpoint: Endpoint
) -> None:
    workflow_id = make_workflow(conn, make_user(conn), payload={"endpoint": endpoint.url})
    message = queue_job(conn, workflow_id)
    executor.execute(message)
    executor.execute(message)
    assert endpoint.hits == 1
    assert job(conn, message.job_id)["attempt"] == 1


def test_a_system_failure_is_retried_then_counted(conn: Any, pool: Pool) -> None:
    class Broken(httpx.Client):
        def stream(self, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("worker bug")

    workflow_id = make_workflow(conn, make_user(conn), payload={"endpoint": "http://127.0.0.1:9/x"})
    message = queue_job(conn, workflow_id)
    with Broken() as http:
        executor = Executor(
            store=JobStore(pool, owner="w", lease_s=30),
            leases=LeaseBook(),
            policy=POLICY,
            http=http,
            egress=EGRESS,
            secrets=SECRETS,
        )
        executor.execute(message)
        first = job(conn, message.job_id)
        assert (first["status"], first["attempt"]) == ("PENDING", 1)
        assert "retrying" in first["error"]
        assert workflow(conn, workflow_id)["consecutive_job_failures_count"] == 0
        executor.execute(message)  # the retry, published again by the scheduler
        last = job(conn, message.job_id)
    assert (last["status"], last["failure_kind"], last["attempt"]) == ("FAILED", "SYSTEM", 2)
    assert workflow(conn, workflow_id)["consecutive_job_failures_count"] == 1


def test_a_lost_lease_is_recovered_and_the_old_worker_is_fenced_off(
    conn: Any, store: JobStore, executor: Executor
) -> None:
    workflow_id = make_workflow(conn, make_user(conn))
    message = queue_job(conn, workflow_id)
    # Worker A claims the job, then stalls past its lease.
    [claim] = store.claim([message.job_id])
    assert claim.lease_token == 1
    conn.execute(
        "UPDATE jobs SET lease_expires_at = now() - interval '1 second' WHERE id = %s",
        (message.job_id,),
    )
    keeper = LeaseKeeper(store, LeaseBook(), policy=POLICY)
    assert keeper.recover_expired() == 1
    recovered = job(conn, message.job_id)
    assert recovered["status"] == "PENDING" and "worker lost" in recovered["error"]
    # Worker B runs the retry with a new token.
    executor.execute(message)
    assert job(conn, message.job_id)["lease_token"] == 2
    # Worker A wakes up and tries to record its result: the token no longer matches.
    stale = decide_outcome(
        RunResult.user_failure("late"), attempt=1, policy=POLICY, now=datetime.now(UTC)
    )
    assert store.record(message.job_id, claim.lease_token, stale).written is False
    final = job(conn, message.job_id)
    assert (final["status"], final["attempt"], final["error"]) == ("COMPLETED", 2, None)
    assert workflow(conn, workflow_id)["consecutive_job_failures_count"] == 0


def test_leases_are_renewed(conn: Any, pool: Pool, store: JobStore) -> None:
    workflow_id = make_workflow(conn, make_user(conn))
    message = queue_job(conn, workflow_id)
    [claim] = store.claim([message.job_id])
    conn.execute(
        "UPDATE jobs SET lease_expires_at = now() + interval '1 second' WHERE id = %s",
        (message.job_id,),
    )
    leases = LeaseBook()
    leases.add(claim.job_id, claim.lease_token)
    LeaseKeeper(JobStore(pool, owner="test-worker", lease_s=600), leases, policy=POLICY).renew()
    expires = conn.execute(
        "SELECT lease_expires_at - now() AS left FROM jobs WHERE id = %s", (message.job_id,)
    ).fetchone()["left"]
    assert expires.total_seconds() > 500


def test_a_retry_of_a_terminated_workflow_s_job_is_cancelled(conn: Any, store: JobStore) -> None:
    workflow_id = make_workflow(conn, make_user(conn))
    message = queue_job(conn, workflow_id)
    [claim] = store.claim([message.job_id])
    conn.execute(
        "UPDATE workflows SET terminated_at = now(), terminated_reason = 'by test' WHERE id = %s",
        (workflow_id,),
    )
    retry = decide_outcome(
        RunResult.system_failure("flaky"), attempt=1, policy=POLICY, now=datetime.now(UTC)
    )
    recorded = store.record(message.job_id, claim.lease_token, retry)
    assert recorded.written and recorded.outcome.status == "CANCELED"
    assert not recorded.outcome.counts_as_failure
    cancelled = job(conn, message.job_id)
    assert (cancelled["status"], cancelled["error"]) == ("CANCELED", "by test")
    assert workflow(conn, workflow_id)["consecutive_job_failures_count"] == 0


def test_a_stopping_worker_hands_its_jobs_back(
    conn: Any, store: JobStore, executor: Executor
) -> None:
    workflow_id = make_workflow(conn, make_user(conn))
    message = queue_job(conn, workflow_id)
    [claim] = store.claim([message.job_id])
    executor.leases.add(claim.job_id, claim.lease_token)
    assert executor.hand_back_all() == 1
    handed = job(conn, message.job_id)
    # The run keeps its attempt number (its log lines are attempt 1's); the retry policy does
    # not count it.
    assert (handed["status"], handed["attempt"], handed["lease_owner"]) == ("PENDING", 1, None)
    assert handed["handed_back"] == 1
    assert "handed back" in handed["error"]
    # The interrupted run finishing late changes nothing.
    late = decide_outcome(RunResult.success(), attempt=1, policy=POLICY, now=datetime.now(UTC))
    assert store.record(message.job_id, claim.lease_token, late).written is False
    assert job(conn, message.job_id)["status"] == "PENDING"
    [again] = store.claim([message.job_id])
    assert (again.attempt, again.counted_attempt) == (2, 1)


@pytest.mark.parametrize(
    ("kind", "payload", "expected"),
    [
        ("HEARTBEAT", {}, True),
        ("HEARTBEAT", {"endpoint": None}, True),
        ("HEARTBEAT", {"endpoint": "https://example.com/healthz"}, False),
        ("HEARTBEAT", {"endpoint": ""}, False),
        ("HEARTBEAT", {"endpoint": 5}, False),
        ("HEARTBEAT", {"headers": {"X-Token": "enc:v1:abc"}}, True),
        ("HEARTBEAT", {"method": "HEAD", "timeout_seconds": 5}, True),
        ("HEARTBEAT", {"Endpoint": "https://example.com/"}, True),
        ("HEARTBEAT", [], True),
        ("HEARTBEAT", "https://example.com/", True),
        ("CONTAINER", {}, False),
        ("CONTAINER", {"endpoint": None}, False),
        ("CONTAINER", {"image": "local/busybox:latest"}, False),
    ],
)
def test_sql_and_python_agree_on_what_a_liveness_job_is(
    conn: Any, kind: str, payload: Any, expected: bool
) -> None:
    row = conn.execute(
        "SELECT chronoverse_is_liveness(%s, %s) AS live", (kind, Jsonb(payload))
    ).fetchone()
    assert (row["live"], is_liveness(kind, payload)) == (expected, expected)


# --- issue 14: shutdown order, log gaps ------------------------------------------------------


class SlowHandBack(JobStore):
    """A store whose hand-back waits a while first (a busy database): time enough for a job pool
    that still takes work to start its next job meanwhile."""

    def hand_back(self, leases: Any, *, error: str) -> None:
        time.sleep(2)
        super().hand_back(leases, error=error)


def test_a_stopping_worker_stops_claiming_before_it_hands_its_jobs_back(
    conn: Any, pool: Pool, endpoint: Endpoint
) -> None:
    endpoint.delay_s = 0.5
    user_id = make_user(conn)
    running, queued = (
        queue_job(conn, make_workflow(conn, user_id, payload={"endpoint": endpoint.url}))
        for _ in range(2)
    )
    with httpx.Client() as http:
        executor = Executor(
            store=SlowHandBack(pool, owner="stopping", lease_s=30),
            leases=LeaseBook(),
            policy=POLICY,
            http=http,
            egress=EGRESS,
            secrets=SECRETS,
            concurrency=1,  # the second job waits for the first one's slot
        )
        failures: list[BaseException] = []

        def consume() -> None:
            try:
                executor.handle(records(running, queued))
            except Exception as exc:  # the batch's unstarted job was dropped: expected
                failures.append(exc)

        handler = threading.Thread(target=consume)
        handler.start()
        wait_until(
            lambda: job(conn, running.job_id)["status"] == "RUNNING",
            message="the first job to run",
        )
        executor.stop()  # the first job ends during the (slow) hand-back: its slot frees up
        handler.join(timeout=10)
        time.sleep(1)  # whatever the pool might still start, it would have by now
    # The second job was never claimed: no job is left RUNNING under a lease nobody renews.
    assert (job(conn, queued.job_id)["status"], job(conn, queued.job_id)["attempt"]) == (
        "QUEUED",
        0,
    )
    assert job(conn, running.job_id)["status"] in {"COMPLETED", "PENDING"}
    assert endpoint.hits == 1
    # And a message that comes after the stop claims nothing.
    late = queue_job(conn, make_workflow(conn, user_id))
    executor.execute(late)
    assert job(conn, late.job_id)["status"] == "QUEUED"


def test_a_lapsed_final_attempt_leaves_its_log_marked_incomplete(
    conn: Any, store: JobStore
) -> None:
    user_id = make_user(conn)
    last, retried = (queue_job(conn, make_workflow(conn, user_id)) for _ in range(2))
    store.claim([last.job_id, retried.job_id])
    conn.execute(
        "UPDATE jobs SET lease_expires_at = now() - interval '1 second' WHERE id = ANY(%s)",
        ([last.job_id, retried.job_id],),
    )
    # One attempt in all for the first (its worker died: final), two for the second.
    once = RetryPolicy(max_attempts=1, base_delay_s=0, max_delay_s=0)
    lapsed = {lease.job_id: lease for lease in store.lapsed(10)}
    for message, policy in ((last, once), (retried, POLICY)):
        lease = lapsed[message.job_id]
        outcome = decide_outcome(
            RunResult.system_failure("worker lost"),
            attempt=lease.attempt,
            policy=policy,
            now=datetime.now(UTC),
        )
        assert store.record_lapsed(lease, outcome).written
    failed = job(conn, last.job_id)
    # Its end marker will never come: the gap is recorded with the outcome.
    assert (failed["status"], failed["failure_kind"], failed["logs_incomplete"]) == (
        "FAILED",
        "SYSTEM",
        True,
    )
    # A retry's next attempt has a log of its own: nothing to mark yet.
    assert (job(conn, retried.job_id)["status"], job(conn, retried.job_id)["logs_incomplete"]) == (
        "PENDING",
        False,
    )


def test_a_log_gap_is_marked_under_the_lease_and_a_new_attempt_starts_without_one(
    conn: Any, store: JobStore
) -> None:
    message = queue_job(conn, make_workflow(conn, make_user(conn)))
    [claim] = store.claim([message.job_id])
    assert not store.mark_logs_incomplete(message.job_id, claim.lease_token + 1)  # not our lease
    assert not job(conn, message.job_id)["logs_incomplete"]
    assert store.mark_logs_incomplete(message.job_id, claim.lease_token)
    assert job(conn, message.job_id)["logs_incomplete"]
    retry = decide_outcome(
        RunResult.system_failure("flaky"), attempt=1, policy=POLICY, now=datetime.now(UTC)
    )
    assert store.record(message.job_id, claim.lease_token, retry).written
    assert job(conn, message.job_id)["logs_incomplete"]  # still the latest attempt's
    [again] = store.claim([message.job_id])
    assert again.attempt == 2
    assert not job(conn, message.job_id)["logs_incomplete"]


def test_beats_with_an_empty_payload_are_claimed_and_finished_in_one_write(
    conn: Any, executor: Executor, endpoint: Endpoint
) -> None:
    live, checked, container, late = one_of_each(conn, endpoint)

    assert executor.run_beats([live, checked, container, late]) == {live.job_id}
    assert executor.run_beats([live]) == set()  # a duplicate message finds nothing

    done = job(conn, live.job_id)
    assert (done["status"], done["attempt"], done["lease_token"]) == ("COMPLETED", 1, 1)
    assert done["started_at"] == done["finished_at"]  # one statement claimed and finished it
    history = conn.execute(
        "SELECT type, data FROM job_events WHERE job_id = %s ORDER BY id", (live.job_id,)
    ).fetchall()
    assert [e["type"] for e in history] == ["created", "claimed", "finished"]
    assert history[1]["data"]["worker"] == "test-worker" and history[1]["data"]["attempt"] == 1
    assert history[2]["data"]["status"] == "COMPLETED"
    for message in (checked, container, late):
        assert (job(conn, message.job_id)["status"], job(conn, message.job_id)["attempt"]) == (
            "QUEUED",
            0,
        )
    assert executor.leases.snapshot() == {}
