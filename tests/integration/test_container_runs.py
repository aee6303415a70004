"""CONTAINER jobs through the executor against real Docker, Postgres, Redis and the broker: the
outcome stands whatever happens to the log, a command Docker cannot start, a timed-out container
Docker will not stop, and what dead attempts leave behind (no two runs of one job at once, and
their output kept as theirs)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import confluent_kafka
import docker
import httpx
import psycopg
import pytest
import redis
import requests
from docker.errors import APIError, NotFound
from docker.utils import kwargs_from_env
from psycopg.rows import dict_row

from chronoverse.definition_cache import DefinitionCache
from chronoverse.definitions import LABEL_INSTALLATION, LABEL_JOB, labels
from chronoverse.egress import EgressPolicy
from chronoverse.jobs import JobMessage
from chronoverse.kafka.producer import StreamingProducer
from chronoverse.logs import EndMessage, LinesMessage, LogMessage, decode_log_message
from chronoverse.payloads import ContainerPolicy
from chronoverse.postgres import Pool, create_pool
from chronoverse.scheduling import RetryPolicy
from chronoverse.secrets import SecretBox, generate_key
from chronoverse.settings import KafkaSettings, PostgresSettings
from services.execution_worker.containers import ContainerRunner
from services.execution_worker.executor import Executor
from services.execution_worker.leases import LeaseBook
from services.execution_worker.leftovers import Leftovers
from services.execution_worker.logship import LogShipper
from services.execution_worker.reaper import Reaper
from services.execution_worker.sandbox import Sandbox
from services.execution_worker.store import JobStore
from tests.conftest import wait_until
from tests.e2e.stack import free_port
from tests.factories import make_user, make_workflow

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

BUSYBOX = "local/busybox:latest"
POLICY = RetryPolicy(max_attempts=2, base_delay_s=0, max_delay_s=0)
SECRETS = SecretBox([generate_key()])
Conn = psycopg.Connection[dict[str, Any]]


class RefusingDocker(docker.APIClient):
    """The real daemon, except that it refuses to stop or kill the first ``refusals`` times it is
    asked (and, with ``refuse_remove``, to remove), as a daemon whose runtime is stuck answers:
    a 500. Everything else goes to Docker."""

    def __init__(self, *, refusals: int, refuse_remove: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.refusals = refusals
        self.refuse_remove = refuse_remove

    def _refuse(self, what: str) -> None:
        response = requests.Response()
        response.status_code = 500
        raise APIError(f"{what} refused", response=response, explanation=f"cannot {what}: stuck")

    def stop(self, container: Any, timeout: Any = None) -> None:
        if self.refusals > 0:
            self.refusals -= 1
            self._refuse("stop")
        super().stop(container, timeout=timeout)

    def kill(self, container: Any, signal: Any = None) -> None:
        if self.refusals > 0:
            self.refusals -= 1
            self._refuse("kill")
        super().kill(container, signal=signal)

    def remove_container(self, container: Any, **kwargs: Any) -> None:
        if self.refuse_remove:
            self._refuse("remove")
        super().remove_container(container, **kwargs)


class SlowRemoval(RefusingDocker):
    """The real daemon (refusing as :class:`RefusingDocker` does), except that a remove waits
    until ``released`` is set (at most 10s), as a busy daemon's slow remove does; ``asked`` is
    set once a remove waits."""

    def __init__(self, *, refusals: int = 0, **kwargs: Any) -> None:
        super().__init__(refusals=refusals, **kwargs)
        self.asked = threading.Event()
        self.released = threading.Event()

    def remove_container(self, container: Any, **kwargs: Any) -> None:
        self.asked.set()
        self.released.wait(10)
        super().remove_container(container, **kwargs)


class RemovingElsewhere(docker.APIClient):
    """The real daemon, seen while another client's remove of the containers in ``removing`` is
    under way: Docker then says they are ``removing``, answers 409 to killing them (they no
    longer run) and to removing them again."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.removing: set[str] = set()

    def _conflict(self, container: Any, what: str) -> None:
        response = requests.Response()
        response.status_code = 409
        raise APIError(what, response=response, explanation=f"{what}: {container}")

    def inspect_container(self, container: Any) -> Any:
        attrs = super().inspect_container(container)
        if attrs["Id"] in self.removing:
            attrs["State"] = {**attrs["State"], "Status": "removing", "Running": False}
        return attrs

    def kill(self, container: Any, signal: Any = None) -> None:
        if container in self.removing:
            self._conflict(container, "container is not running")
        super().kill(container, signal=signal)

    def remove_container(self, container: Any, **kwargs: Any) -> None:
        if container in self.removing:
            self._conflict(container, "removal of container is already in progress")
        super().remove_container(container, **kwargs)


def refusing_client(**kwargs: Any) -> docker.DockerClient:
    client = docker.DockerClient(**kwargs_from_env())
    client.api.close()
    client.api = RefusingDocker(**kwargs, **kwargs_from_env())
    return client


def slow_removal_client(*, refusals: int = 0) -> tuple[docker.DockerClient, SlowRemoval]:
    client = docker.DockerClient(**kwargs_from_env())
    client.api.close()
    client.api = api = SlowRemoval(refusals=refusals, **kwargs_from_env())
    return client, api


def removing_elsewhere_client() -> tuple[docker.DockerClient, RemovingElsewhere]:
    client = docker.DockerClient(**kwargs_from_env())
    client.api.close()
    client.api = api = RemovingElsewhere(**kwargs_from_env())
    return client, api


@dataclass
class Worker:
    """One execution worker's parts, wired as worker.py wires them."""

    executor: Executor
    store: JobStore
    leftovers: Leftovers
    runner: ContainerRunner
    installation: str
    topic: str


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
def installation(docker_client: docker.DockerClient) -> Iterator[str]:
    name = f"test-{uuid.uuid4().hex[:8]}"
    yield name
    for container in docker_client.containers.list(
        all=True, filters={"label": f"{LABEL_INSTALLATION}={name}"}
    ):
        try:
            container.remove(force=True)
        except NotFound:
            pass


@pytest.fixture
def producer(kafka_settings: KafkaSettings) -> Iterator[StreamingProducer]:
    producer = StreamingProducer(kafka_settings, client_id="test-exec-logs")
    yield producer
    producer.close(timeout_s=1)


@pytest.fixture
def make_worker(
    pool: Pool,
    redis_client: redis.Redis,
    docker_client: docker.DockerClient,
    topic_factory: Callable[..., str],
    installation: str,
    producer: StreamingProducer,
) -> Iterator[Callable[..., Worker]]:
    made: list[tuple[Executor, ContainerRunner, httpx.Client]] = []

    def make(
        *,
        client: docker.DockerClient = docker_client,
        log_producer: StreamingProducer = producer,
        resend_rounds: int = 3,
    ) -> Worker:
        topic = topic_factory()

        def shippers(job_id: UUID, attempt: int) -> LogShipper:
            return LogShipper(
                log_producer, topic, job_id, attempt=attempt, resend_rounds=resend_rounds
            )

        store = JobStore(pool, owner=f"worker-{uuid.uuid4().hex[:6]}", lease_s=30)
        leftovers = Leftovers(client, shippers, installation=installation, max_log_chars=1_000_000)
        runner = ContainerRunner(
            docker_client=client,
            definitions=DefinitionCache(redis_client, SECRETS, ttl_s=60),
            secrets=SECRETS,
            policy=ContainerPolicy(),
            sandbox=Sandbox(user="65534:65534", tmpfs_mb=16, nofile=256),
            shippers=shippers,
            touch_volume=store.touch_volume,
            leftovers=leftovers,
            stop_grace_s=1,
            max_log_chars=1_000_000,
            installation=installation,
        )
        http = httpx.Client()
        executor = Executor(
            store=store,
            leases=LeaseBook(),
            policy=POLICY,
            http=http,
            egress=EgressPolicy(allow=()),
            secrets=SECRETS,
            containers=runner,
        )
        made.append((executor, runner, http))
        return Worker(
            executor=executor,
            store=store,
            leftovers=leftovers,
            runner=runner,
            installation=installation,
            topic=topic,
        )

    yield make
    for executor, runner, http in made:
        executor.close()
        runner.close()
        http.close()


def container_job(conn: Conn, command: list[str], **payload: Any) -> JobMessage:
    workflow_id = make_workflow(
        conn,
        make_user(conn),
        kind="CONTAINER",
        payload={"image": BUSYBOX, "command": command, **payload},
    )
    row = conn.execute(
        "INSERT INTO jobs (workflow_id, user_id, trigger, scheduled_at, status, queued_at) "
        "SELECT id, user_id, 'MANUAL', now(), 'QUEUED', now() FROM workflows WHERE id = %s "
        "RETURNING id",
        (workflow_id,),
    ).fetchone()
    assert row is not None
    return JobMessage(job_id=row["id"], workflow_id=workflow_id)


def job(conn: Conn, job_id: UUID) -> dict[str, Any]:
    row = conn.execute("SELECT * FROM jobs WHERE id = %s", (job_id,)).fetchone()
    assert row is not None
    return row


def log_messages(
    settings: KafkaSettings, topic: str, *, until: Callable[[list[LogMessage]], bool]
) -> list[LogMessage]:
    """The topic's messages from the start, once ``until`` holds for them."""
    consumer = confluent_kafka.Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "group.id": f"test-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([confluent_kafka.TopicPartition(topic, 0, confluent_kafka.OFFSET_BEGINNING)])
    messages: list[LogMessage] = []
    deadline = time.monotonic() + 30
    try:
        while not until(messages):
            assert time.monotonic() < deadline, f"only {messages} on {topic}"
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                messages.append(decode_log_message(message.key(), message.value()))
    finally:
        consumer.close()
    return messages


def ended(attempt: int) -> Callable[[list[LogMessage]], bool]:
    return lambda messages: any(
        isinstance(m, EndMessage) and m.attempt == attempt for m in messages
    )


def lines_of(messages: list[LogMessage], attempt: int) -> list[tuple[int, str]]:
    """An attempt's lines as (seq, text), each seq once, in seq order."""
    seen = {
        line.seq: line.line
        for m in messages
        if isinstance(m, LinesMessage) and m.attempt == attempt
        for line in m.lines
    }
    return sorted(seen.items())


def job_containers(client: docker.DockerClient, job_id: UUID) -> list[Any]:
    return list(client.containers.list(all=True, filters={"label": f"{LABEL_JOB}={job_id}"}))


def gone(client: docker.DockerClient, job_id: UUID) -> None:
    """Wait until no container of the job is left (a finished one is removed after its outcome)."""
    wait_until(
        lambda: job_containers(client, job_id) == [],
        timeout_s=30,
        message=f"the containers of job {job_id} removed",
    )


# --- the outcome first ---------------------------------------------------------------------------


def test_a_finished_container_s_outcome_stands_when_its_log_cannot_be_shipped(
    conn: Conn, make_worker: Callable[..., Worker], kafka_settings: KafkaSettings
) -> None:
    # A broker that is down for the whole run: nothing listens on this port.
    down = KafkaSettings.from_environ(
        {"CHRONOVERSE_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}"}
    )
    lost = StreamingProducer(down, client_id="test-down", delivery_timeout_s=1)
    try:
        worker = make_worker(log_producer=lost, resend_rounds=0)
        message = container_job(conn, ["sh", "-c", "echo done"])
        worker.executor.execute(message)
    finally:
        lost.close(timeout_s=0)
    ran = job(conn, message.job_id)
    # Not retried as a SYSTEM failure: the container finished, and its exit is the outcome.
    assert (ran["status"], ran["exit_code"], ran["attempt"]) == ("COMPLETED", 0, 1), ran["error"]
    assert ran["logs_incomplete"] is True  # the lost line is a recorded gap


def test_the_outcome_is_recorded_while_the_container_is_being_removed(
    conn: Conn,
    make_worker: Callable[..., Worker],
    docker_client: docker.DockerClient,
    kafka_settings: KafkaSettings,
) -> None:
    client, api = slow_removal_client()
    released = api.released
    try:
        worker = make_worker(client=client)
        message = container_job(conn, ["sh", "-c", "echo done"])
        worker.executor.execute(message)
        # Recorded, its log ended, and the job's thread free, while Docker still removes it.
        ran = job(conn, message.job_id)
        assert (ran["status"], ran["exit_code"]) == ("COMPLETED", 0), ran["error"]
        [left] = job_containers(docker_client, message.job_id)
        assert left.status == "exited"
        messages = log_messages(kafka_settings, worker.topic, until=ended(1))
        assert lines_of(messages, 1) == [(0, "done")]
        # No live lease owns it any more, but its worker's reaper leaves it to the removal.
        reaper = Reaper(
            docker_client,
            owned=worker.store.owned,
            mine=worker.runner.removing,
            installation=worker.installation,
            salvage=worker.leftovers.salvage,
        )
        assert worker.runner.removing() == {message.job_id}
        assert reaper.reap() == 0
        released.set()
        gone(docker_client, message.job_id)
        wait_until(lambda: worker.runner.removing() == set(), message="the removal forgotten")
    finally:
        released.set()
        client.close()


def test_other_workers_leave_a_finished_container_to_the_worker_removing_it(
    conn: Conn,
    make_worker: Callable[..., Worker],
    docker_client: docker.DockerClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Two workers on one Docker daemon. The first recorded the outcome; its removal is slow.
    client, api = slow_removal_client()
    try:
        worker = make_worker(client=client)
        message = container_job(conn, ["sh", "-c", "echo done"])
        worker.executor.execute(message)
        assert job(conn, message.job_id)["status"] == "COMPLETED"
        [left] = job_containers(docker_client, message.job_id)
        assert left.status == "exited"
        # No live lease owns it, and it is not the other worker's removal: still, its reaper
        # leaves it (it stopped moments ago), rather than ship its lines again and race the
        # removal.
        other = make_worker()
        reaper = Reaper(
            docker_client,
            owned=other.store.owned,
            mine=other.runner.removing,
            installation=other.installation,
            salvage=other.leftovers.salvage,
            removal_grace_s=60,  # the default's few seconds, on a loaded machine
        )
        assert reaper.reap() == 0
        assert job_containers(docker_client, message.job_id) != []
        api.released.set()
        gone(docker_client, message.job_id)
    finally:
        api.released.set()
        client.close()
    actions = {getattr(r, "action", None) for r in caplog.records}
    assert not actions & {"container_reaped", "leftover_removed", "container_reap_failed"}


def test_a_container_being_removed_counts_as_gone_for_other_workers(
    conn: Conn,
    make_worker: Callable[..., Worker],
    docker_client: docker.DockerClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The first worker's removal holds in Docker; the other worker's daemon says "removing".
    client, api = slow_removal_client()
    elsewhere, seen = removing_elsewhere_client()
    try:
        worker = make_worker(client=client)
        message = container_job(conn, ["sh", "-c", "echo done"])
        worker.executor.execute(message)
        [left] = job_containers(docker_client, message.job_id)
        seen.removing.add(left.id)
        other = make_worker(client=elsewhere)
        # Another attempt's start there (its leftovers) and its reaper, even past the grace:
        # nothing to stop, ship or remove, and no Docker refusal to give up on.
        assert other.leftovers.clear(message.job_id) == 0
        reaper = Reaper(
            elsewhere,
            owned=other.store.owned,
            mine=other.runner.removing,
            installation=other.installation,
            salvage=other.leftovers.salvage,
            removal_grace_s=0,
        )
        assert reaper.reap() == 0
        [container] = elsewhere.containers.list(
            all=True, filters={"label": f"{LABEL_JOB}={message.job_id}"}
        )
        assert other.leftovers.salvage(container) is False
        api.released.set()
        gone(docker_client, message.job_id)
    finally:
        api.released.set()
        client.close()
        elsewhere.close()
    actions = {getattr(r, "action", None) for r in caplog.records}
    assert not actions & {
        "container_stop_failed",
        "container_unstoppable",
        "container_reap_failed",
        "leftover_removed",
        "container_reaped",
    }


def test_a_retry_is_recorded_only_once_its_run_s_container_is_gone(
    conn: Conn, make_worker: Callable[..., Worker], docker_client: docker.DockerClient
) -> None:
    # A timed-out container Docker will not stop (a SYSTEM failure, retried): its worker removes
    # it before it writes the retry, however slow the removal, so that no next attempt on any
    # worker finds it still there, or still running.
    client, api = slow_removal_client(refusals=1000)
    try:
        worker = make_worker(client=client)
        message = container_job(conn, ["sh", "-c", "echo start; sleep 60"], timeout_seconds=1)
        running = threading.Thread(target=worker.executor.execute, args=(message,))
        running.start()
        assert api.asked.wait(60), "no removal asked for"
        running.join(timeout=2)
        assert running.is_alive(), "the outcome did not wait for the removal"
        assert job(conn, message.job_id)["status"] == "RUNNING"
        api.released.set()
        running.join(timeout=60)
        assert not running.is_alive()
    finally:
        api.released.set()
        client.close()
    retried = job(conn, message.job_id)
    assert (retried["status"], retried["attempt"]) == ("PENDING", 1)
    assert "could not be stopped" in retried["error"]
    assert job_containers(docker_client, message.job_id) == []


def test_a_finished_job_s_container_left_behind_is_reaped(
    conn: Conn,
    make_worker: Callable[..., Worker],
    docker_client: docker.DockerClient,
    kafka_settings: KafkaSettings,
) -> None:
    # The removal after the outcome never happens (Docker refuses it here; a worker that dies
    # right after the outcome is the same): a later reap of any worker removes the container.
    client = refusing_client(refusals=0, refuse_remove=True)
    try:
        worker = make_worker(client=client)
        message = container_job(conn, ["sh", "-c", "echo done"])
        worker.executor.execute(message)
        wait_until(lambda: worker.runner.removing() == set(), message="the removal given up")
    finally:
        client.close()
    assert job(conn, message.job_id)["status"] == "COMPLETED"
    [left] = job_containers(docker_client, message.job_id)
    assert left.status == "exited"

    def reaper(*, removal_grace_s: float) -> Reaper:
        return Reaper(
            docker_client,
            owned=worker.store.owned,
            mine=set,
            installation=worker.installation,
            salvage=worker.leftovers.salvage,
            removal_grace_s=removal_grace_s,
        )

    # It stopped moments ago: left to its worker's removal for a while, then reaped.
    assert reaper(removal_grace_s=60).reap() == 0
    assert reaper(removal_grace_s=0).reap() == 1
    assert job_containers(docker_client, message.job_id) == []
    # Its output, shipped again by the salvage, is the same lines with the same seqs (stored
    # once), and the outcome stands.
    messages = log_messages(kafka_settings, worker.topic, until=ended(1))
    assert lines_of(messages, 1) == [(0, "done")]
    assert job(conn, message.job_id)["status"] == "COMPLETED"


# --- a command Docker cannot start ----------------------------------------------------------------


def test_a_command_whose_executable_is_not_in_the_image_is_a_user_failure(
    conn: Conn, make_worker: Callable[..., Worker], kafka_settings: KafkaSettings
) -> None:
    worker = make_worker()
    message = container_job(conn, ["/no/such/program"])
    worker.executor.execute(message)
    failed = job(conn, message.job_id)
    assert (failed["status"], failed["failure_kind"], failed["attempt"]) == ("FAILED", "USER", 1)
    assert failed["error"].startswith("container could not start: ")
    assert "/no/such/program" in failed["error"]
    # Its log still ends (with no line), so readers do not wait for it.
    messages = log_messages(kafka_settings, worker.topic, until=ended(1))
    assert [m for m in messages if isinstance(m, EndMessage)] == [
        EndMessage(job_id=message.job_id, attempt=1, last_seq=-1)
    ]


# --- a timed-out container Docker will not stop ---------------------------------------------------


def test_a_timed_out_container_docker_refuses_to_stop_is_killed_again(
    conn: Conn, make_worker: Callable[..., Worker], docker_client: docker.DockerClient
) -> None:
    client = refusing_client(refusals=1)  # the stop is refused; the kill after it works
    try:
        worker = make_worker(client=client)
        message = container_job(conn, ["sh", "-c", "echo start; sleep 60"], timeout_seconds=1)
        started = time.monotonic()
        worker.executor.execute(message)
        took = time.monotonic() - started
        failed = job(conn, message.job_id)
        gone(docker_client, message.job_id)  # removed after the outcome, on this client
    finally:
        client.close()
    assert (failed["status"], failed["failure_kind"], failed["error"]) == (
        "FAILED",
        "USER",
        "timed out after 1s",
    )
    assert took < 20, f"the job ran {took:.0f}s, past its timeout"


def test_a_timed_out_container_that_cannot_be_stopped_ends_its_job_and_the_reaper_gets_it(
    conn: Conn,
    make_worker: Callable[..., Worker],
    docker_client: docker.DockerClient,
    pool: Pool,
    kafka_settings: KafkaSettings,
) -> None:
    client = refusing_client(refusals=1000, refuse_remove=True)
    try:
        worker = make_worker(client=client)
        message = container_job(conn, ["sh", "-c", "echo start; sleep 60"], timeout_seconds=1)
        started = time.monotonic()
        worker.executor.execute(message)
        took = time.monotonic() - started
    finally:
        client.close()
    stuck = job(conn, message.job_id)
    # A SYSTEM failure that says why (retried once the container is gone), not a job that runs
    # on past its timeout.
    assert (stuck["status"], stuck["attempt"]) == ("PENDING", 1)
    assert "timed out after 1s, and the container could not be stopped: " in stuck["error"]
    assert took < 20, f"the job ran {took:.0f}s, past its timeout"
    [left] = job_containers(docker_client, message.job_id)
    assert left.status == "running"

    # No lease owns it now: a reaper on a daemon that answers stops it, keeping its output.
    store = JobStore(pool, owner="reaper", lease_s=30)
    topic = worker.topic
    reaper = Reaper(
        docker_client,
        owned=store.owned,
        mine=set,
        installation=worker.installation,
        salvage=Leftovers(
            docker_client,
            lambda job_id, attempt: LogShipper(
                StreamingProducer(kafka_settings, client_id="test-reaper"),
                topic,
                job_id,
                attempt=attempt,
            ),
            installation=worker.installation,
            max_log_chars=1_000_000,
        ).salvage,
    )
    assert reaper.reap() == 1
    assert job_containers(docker_client, message.job_id) == []
    messages = log_messages(kafka_settings, topic, until=ended(1))
    assert lines_of(messages, 1) == [(0, "start")]


# --- what dead attempts leave behind --------------------------------------------------------------


def dead_attempt(
    conn: Conn,
    client: docker.DockerClient,
    message: JobMessage,
    installation: str,
    *,
    script: str,
    printed: int,
    attempt: int = 1,
) -> Any:
    """The container a worker that died left running for the job's attempt; the job as the
    lease recovery leaves it (PENDING for the next attempt)."""
    conn.execute(
        "UPDATE jobs SET status = 'PENDING', attempt = %s, lease_token = %s, run_after = now(), "
        "error = 'worker lost' WHERE id = %s",
        (attempt, attempt, message.job_id),
    )
    container = client.containers.create(
        BUSYBOX,
        ["sh", "-c", script],
        labels=labels(message.job_id, message.workflow_id, attempt, installation, attempt=attempt),
        user="65534:65534",
    )
    container.start()
    wait_until(
        lambda: container.logs().count(b"\n") >= printed,
        timeout_s=30,
        message="the dead run's output",
    )
    return container


def test_a_new_attempt_starts_only_after_the_dead_attempt_s_container_is_gone(
    conn: Conn,
    make_worker: Callable[..., Worker],
    docker_client: docker.DockerClient,
    installation: str,
    kafka_settings: KafkaSettings,
) -> None:
    worker = make_worker()
    message = container_job(conn, ["sh", "-c", "echo second run"])
    since = int(time.time()) - 1
    old = dead_attempt(
        conn,
        docker_client,
        message,
        installation,
        # Apart in time: the order of two streams' lines is Docker's only to a millisecond.
        script="echo one; sleep 0.1; echo two >&2; sleep 0.1; echo three; sleep 60",
        printed=3,
    )
    worker.executor.execute(message)
    ran = job(conn, message.job_id)
    assert (ran["status"], ran["attempt"]) == ("COMPLETED", 2), ran["error"]
    gone(docker_client, message.job_id)

    # Docker's own record: the dead attempt's container was destroyed before the new one started.
    events = list(
        docker_client.events(
            since=since,
            until=int(time.time()) + 1,
            filters={"type": "container", "label": f"{LABEL_JOB}={message.job_id}"},
            decode=True,
        )
    )
    destroyed = [e["timeNano"] for e in events if e["Action"] == "destroy" and e["id"] == old.id]
    started = [e["timeNano"] for e in events if e["Action"] == "start" and e["id"] != old.id]
    assert destroyed and started, [(e["Action"], e["id"][:12], e["timeNano"]) for e in events]
    assert destroyed[0] < started[0]

    # Its output is kept as attempt 1's, with the seqs it was printed with; attempt 2's apart.
    messages = log_messages(
        kafka_settings, worker.topic, until=lambda m: ended(1)(m) and ended(2)(m)
    )
    assert lines_of(messages, 1) == [(0, "one"), (1, "two"), (2, "three")]
    assert EndMessage(job_id=message.job_id, attempt=1, last_seq=2) in messages
    assert lines_of(messages, 2) == [(0, "second run")]


def test_the_reaper_keeps_an_orphan_s_output_before_removing_it(
    conn: Conn,
    make_worker: Callable[..., Worker],
    docker_client: docker.DockerClient,
    installation: str,
    kafka_settings: KafkaSettings,
    pool: Pool,
) -> None:
    worker = make_worker()
    message = container_job(conn, ["true"])
    dead_attempt(
        conn,
        docker_client,
        message,
        installation,
        script="for i in 1 2 3 4; do echo line $i; done; sleep 60",
        printed=4,
        attempt=3,
    )
    reaper = Reaper(
        docker_client,
        owned=worker.store.owned,
        mine=set,
        installation=installation,
        salvage=worker.leftovers.salvage,
    )
    assert reaper.reap() == 1
    assert job_containers(docker_client, message.job_id) == []
    messages = log_messages(kafka_settings, worker.topic, until=ended(3))
    assert lines_of(messages, 3) == [(i, f"line {i + 1}") for i in range(4)]
    assert EndMessage(job_id=message.job_id, attempt=3, last_seq=3) in messages
