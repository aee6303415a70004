"""The consumer loop against the real broker."""

from __future__ import annotations

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

from chronoverse.errors import HandlerError
from chronoverse.kafka.consumer import ConsumerLoop, ConsumerOptions, Record
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
    **options: Any,
) -> Iterator[tuple[ConsumerLoop[Value], threading.Event, list[BaseException]]]:
    loop: ConsumerLoop[Value] = ConsumerLoop(
        settings,
        ConsumerOptions(
            group_id=group, topics=(topic,), client_id=f"test-{uuid.uuid4().hex[:6]}", **options
        ),
        decode=decode_object,
        handle=handle,
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
    produce(kafka_settings, topic, [encode({"n": 1}), b"\x00not json", b"[]", encode({"n": 2})])
    collector = Collector()
    with running(kafka_settings, topic, group, collector) as (_, _, errors):
        wait_until(lambda: collector.values == [1, 2], message="both valid messages")
        wait_until(
            lambda: committed(kafka_settings, topic, group) == [4],
            timeout_s=10,
            message="offsets past the poison messages",
        )
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


def test_a_failing_handler_stops_the_loop_without_committing_its_batch(
    kafka_settings: KafkaSettings, topic_factory: Callable[..., str]
) -> None:
    topic, group = topic_factory(partitions=1), group_name()
    produce(kafka_settings, topic, numbered(0, 5))
    handled: list[int] = []

    def handle(batch: Sequence[Record[Value]]) -> None:
        for record in batch:
            if record.value["n"] == 3:
                raise RuntimeError("database unavailable")
            handled.append(record.value["n"])

    with running(kafka_settings, topic, group, handle) as (_, _, errors):
        wait_until(lambda: errors, message="the loop to stop")
    assert isinstance(errors[0], HandlerError)
    assert errors[0].offsets == (3,)
    assert isinstance(errors[0].__cause__, RuntimeError)
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
