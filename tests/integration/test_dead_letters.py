"""Dead letters against the real broker: no message stops its partition or its worker, none is
dead-lettered because of a short outage, and dead letters can be listed and replayed."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence

import confluent_kafka
import pytest
from click.testing import CliRunner
from prometheus_client import REGISTRY

from chronoverse.cli import cli
from chronoverse.domain import Topic
from chronoverse.errors import PublishError
from chronoverse.kafka.admin import delete_topics, ensure_topics
from chronoverse.kafka.consumer import Record
from chronoverse.kafka.deadletters import (
    DeadLetter,
    DeadLetterReader,
    DeadLetterReason,
    DeadLetterWriter,
    StoredDeadLetter,
    dead_letter_topic,
    replay,
)
from chronoverse.messages import encode
from chronoverse.settings import KafkaSettings
from tests.conftest import wait_until
from tests.integration.test_kafka_consumer import (
    Collector,
    Value,
    committed,
    group_name,
    numbered,
    produce,
    running,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture
def fast(kafka_settings: KafkaSettings) -> KafkaSettings:
    """Settings that give up on a failing message after three retries within a second."""
    return kafka_settings.model_copy(
        update={
            "kafka_handler_retries": 3,
            "kafka_handler_retry_base_delay_s": 0.1,
            "kafka_handler_retry_max_delay_s": 0.3,
        }
    )


@pytest.fixture
def topic_with_dlq(
    kafka_settings: KafkaSettings, topic_factory: Callable[..., str]
) -> Iterator[Callable[..., str]]:
    created: list[str] = []

    def create(partitions: int = 1) -> str:
        topic = topic_factory(partitions=partitions)
        ensure_topics(kafka_settings, [dead_letter_topic(topic)], partitions=1)
        created.append(dead_letter_topic(topic))
        return topic

    yield create
    if created:
        delete_topics(kafka_settings, created)


def dead_letters(settings: KafkaSettings, topic: str) -> list[StoredDeadLetter]:
    with DeadLetterReader(settings, dead_letter_topic(topic)) as reader:
        return reader.read()


def counted(group: str, topic: str, reason: str) -> float:
    value = REGISTRY.get_sample_value(
        "chronoverse_kafka_dead_letters_total", {"group": group, "topic": topic, "reason": reason}
    )
    return value or 0.0


def deeply_nested() -> bytes:
    return b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}"


def test_a_message_that_fails_to_decode_in_any_way_is_dead_lettered(
    kafka_settings: KafkaSettings, topic_with_dlq: Callable[..., str]
) -> None:
    topic, group = topic_with_dlq(), group_name()
    produce(kafka_settings, topic, [encode({"n": 1}), deeply_nested(), b"\xff", encode({"n": 2})])
    collector = Collector()

    def decode(key: bytes | None, value: bytes | None) -> Value:
        # A decoder that does not say Malformed: json's own errors and its RecursionError.
        return dict(json.loads(value or b""))

    with running(kafka_settings, topic, group, collector, decode=decode) as (_, _, errors):
        wait_until(lambda: collector.values == [1, 2], message="both valid messages")
        wait_until(
            lambda: committed(kafka_settings, topic, group) == [4],
            timeout_s=15,
            message="offsets past the malformed messages",
        )
    assert errors == []
    letters = dead_letters(kafka_settings, topic)
    assert [(s.letter.offset, s.letter.value) for s in letters if s.letter] == [
        (1, deeply_nested()),
        (2, b"\xff"),
    ]
    first = letters[0].letter
    assert first is not None
    assert first.topic == topic and first.partition == 0 and first.key == b"k"
    assert first.group == group and first.reason is DeadLetterReason.MALFORMED
    assert first.error.startswith("RecursionError: ")
    assert first.attempts == 0
    assert letters[1].letter is not None
    assert letters[1].letter.error.startswith("UnicodeDecodeError: ")
    assert counted(group, topic, "malformed") == 2


class Flaky:
    """A handler that fails on chosen values: for ever, or a number of times."""

    def __init__(self, poison: set[int], fail_times: int | None = None) -> None:
        self.poison = poison
        self.fail_times = fail_times
        self.failures: dict[int, int] = {}
        self.handled: list[int] = []
        self.batches: list[list[int]] = []
        self.lock = threading.Lock()

    def __call__(self, batch: Sequence[Record[Value]]) -> None:
        values = [r.value["n"] for r in batch]
        with self.lock:
            self.batches.append(values)
            failing = []
            for n in values:
                if n in self.poison:
                    count = self.failures[n] = self.failures.get(n, 0) + 1
                    if self.fail_times is None or count <= self.fail_times:
                        failing.append(n)
            if failing:
                raise ValueError(f"negative seq in message {failing[0]}")
            self.handled.extend(values)


def test_a_poison_message_is_retried_alone_then_dead_lettered_and_its_neighbours_handled(
    fast: KafkaSettings, topic_with_dlq: Callable[..., str]
) -> None:
    topic, group = topic_with_dlq(), group_name()
    produce(fast, topic, numbered(0, 6))
    handler = Flaky(poison={3})
    with running(fast, topic, group, handler, max_batch_size=10) as (_, _, errors):
        wait_until(
            lambda: committed(fast, topic, group) == [6],
            timeout_s=20,
            message="the partition to move past the poison message",
        )
    assert errors == []
    # Not one neighbour was dead-lettered: they were handled once the batch was split.
    assert sorted(handler.handled) == [0, 1, 2, 4, 5]
    assert handler.failures == {3: 4}  # in its batch, then alone: three retries in all
    assert [3] in handler.batches
    [stored] = dead_letters(fast, topic)
    letter = stored.letter
    assert letter is not None
    assert (letter.topic, letter.partition, letter.offset) == (topic, 0, 3)
    assert letter.value == encode({"n": 3})
    assert letter.reason is DeadLetterReason.HANDLER_FAILED
    assert letter.error == "ValueError: negative seq in message 3"
    assert letter.attempts == 4
    assert letter.timestamp_ms is not None
    assert counted(group, topic, "handler_failed") == 1


def test_a_failure_that_passes_dead_letters_nothing(
    fast: KafkaSettings, topic_with_dlq: Callable[..., str]
) -> None:
    topic, group = topic_with_dlq(), group_name()
    produce(fast, topic, numbered(0, 4))
    # Fails three times (an outage), then works: within the retries, so nothing is given up.
    handler = Flaky(poison={0, 1, 2, 3}, fail_times=3)
    with running(fast, topic, group, handler, max_batch_size=4) as (_, _, errors):
        wait_until(lambda: committed(fast, topic, group) == [4], timeout_s=20, message="commit")
    assert errors == []
    assert sorted(handler.handled) == [0, 1, 2, 3]
    assert dead_letters(fast, topic) == []


def produce_to(settings: KafkaSettings, topic: str, partition: int, values: list[bytes]) -> None:
    producer = confluent_kafka.Producer({"bootstrap.servers": settings.kafka_bootstrap_servers})
    for value in values:
        producer.produce(topic, value=value, key=b"k", partition=partition)
    assert producer.flush(10) == 0


def test_while_a_message_waits_for_its_retry_other_partitions_and_messages_move(
    kafka_settings: KafkaSettings, topic_with_dlq: Callable[..., str]
) -> None:
    topic, group = topic_with_dlq(partitions=2), group_name()
    slow = kafka_settings.model_copy(update={"kafka_handler_retry_base_delay_s": 30.0})
    handler = Flaky(poison={0})
    with running(slow, topic, group, handler) as (loop, _, errors):
        wait_until(lambda: loop.has_assignment, timeout_s=30, message="an assignment")
        produce_to(slow, topic, 0, [encode({"n": 0})])
        wait_until(lambda: handler.failures.get(0) == 1, message="the first failure")
        # One handler thread (concurrency 1), and the waiting retry does not hold it.
        produce_to(slow, topic, 0, numbered(1, 20))
        produce_to(slow, topic, 1, numbered(20, 40))
        wait_until(lambda: len(handler.handled) == 39, message="everything else")
        wait_until(
            lambda: committed(slow, topic, group, partitions=2)[1] == 20,
            message="the other partition's commit",
        )
        assert handler.failures == {0: 1}
        assert loop.watch.problem() is None
    assert errors == []
    # The partition of the waiting message commits nothing past it; stopping leaves it for
    # redelivery rather than dead-lettering it.
    assert committed(slow, topic, group, partitions=2) == [confluent_kafka.OFFSET_INVALID, 20]
    assert dead_letters(slow, topic) == []


class RefusingSink:
    """The real writer, behind a switch that makes it fail as a broker that is down would."""

    def __init__(self, writer: DeadLetterWriter) -> None:
        self.writer = writer
        self.refusing = True
        self.refused = 0

    def write(self, letter: DeadLetter) -> None:
        if self.refusing:
            self.refused += 1
            raise PublishError(dead_letter_topic(letter.topic), None, "broker unreachable")
        self.writer.write(letter)

    def close(self) -> None:
        self.writer.close()


def test_a_dead_letter_that_cannot_be_written_holds_its_offset_until_it_can(
    fast: KafkaSettings, topic_with_dlq: Callable[..., str]
) -> None:
    topic, group = topic_with_dlq(), group_name()
    produce(fast, topic, [b"not json", encode({"n": 1})])
    collector = Collector()
    sink = RefusingSink(DeadLetterWriter(fast, client_id="test-dlq"))
    with running(fast, topic, group, collector, dead_letters=sink) as (_, _, errors):
        wait_until(lambda: collector.values == [1], message="the valid message")
        wait_until(lambda: sink.refused >= 3, message="three refused writes")
        # Never dropped: the offset of the message stays uncommitted meanwhile.
        assert committed(fast, topic, group) == [confluent_kafka.OFFSET_INVALID]
        sink.refusing = False
        wait_until(
            lambda: committed(fast, topic, group) == [2],
            timeout_s=10,
            message="the dead letter written once the broker takes it",
        )
    assert errors == []
    [stored] = dead_letters(fast, topic)
    assert stored.letter is not None and stored.letter.value == b"not json"


def test_dead_letters_are_replayed_once_to_their_topic(
    kafka_settings: KafkaSettings, topic_with_dlq: Callable[..., str]
) -> None:
    topic, group = topic_with_dlq(), group_name()
    settings = kafka_settings.model_copy(update={"kafka_topic_prefix": f"r{uuid.uuid4().hex[:6]}."})
    produce(kafka_settings, topic, [b"bad 1", encode({"n": 1}), b"bad 2"])
    collector = Collector()
    with running(kafka_settings, topic, group, collector) as (_, _, errors):
        wait_until(lambda: committed(kafka_settings, topic, group) == [3], message="commits")
    assert errors == []
    assert [s.letter.value for s in dead_letters(kafka_settings, topic) if s.letter] == [
        b"bad 1",
        b"bad 2",
    ]

    first = replay(settings, topic)
    assert [s.letter.value for s in first.replayed if s.letter] == [b"bad 1", b"bad 2"]
    assert replay(settings, topic).replayed == []  # the replay group committed past them
    # Back on the original topic, after what was there, with their keys.
    replayed = read_topic(kafka_settings, topic, 5)
    assert [(m.key(), m.value()) for m in replayed[3:]] == [(b"k", b"bad 1"), (b"k", b"bad 2")]

    # Consumed again, they are dead-lettered again, and a later replay sends only those.
    with running(kafka_settings, topic, group, collector) as (_, _, errors):
        wait_until(lambda: committed(kafka_settings, topic, group) == [5], message="commits")
    second = replay(settings, topic)
    assert [(s.offset, s.letter.offset) for s in second.replayed if s.letter] == [(2, 3), (3, 4)]


def read_topic(settings: KafkaSettings, topic: str, count: int) -> list[confluent_kafka.Message]:
    consumer = confluent_kafka.Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "group.id": group_name(),
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([confluent_kafka.TopicPartition(topic, 0, 0)])
    found: list[confluent_kafka.Message] = []
    try:
        wait_until(
            lambda: (
                found.extend(m for m in consumer.consume(count, 0.5) if not m.error())
                or len(found) >= count
            ),
            message=f"{count} messages on {topic}",
        )
    finally:
        consumer.close()
    return found


def test_the_cli_lists_and_replays_dead_letters(kafka_settings: KafkaSettings) -> None:
    prefix = f"cli{uuid.uuid4().hex[:6]}."
    settings = kafka_settings.model_copy(update={"kafka_topic_prefix": prefix})
    topics = [settings.topic(Topic.JOB_LOGS), settings.dead_letter_topic(Topic.JOB_LOGS)]
    ensure_topics(settings, topics, partitions=1)
    env = {
        "CHRONOVERSE_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "CHRONOVERSE_KAFKA_TOPIC_PREFIX": prefix,
    }
    try:
        produce(settings, topics[0], [b"{not json"], key="job-1")
        group = settings.group("chronoverse-log-processor")
        with running(settings, topics[0], group, Collector()) as _:
            wait_until(lambda: committed(settings, topics[0], group) == [1], message="commit")

        runner = CliRunner()
        listed = runner.invoke(cli, ["dlq", "list", "job_logs", "--json"], env=env)
        assert listed.exit_code == 0, listed.output
        [entry] = json.loads(listed.stdout)
        assert entry["topic"] == topics[0] and entry["offset"] == 0
        assert entry["key"] == "job-1" and entry["value"] == "{not json"
        assert entry["reason"] == "malformed"
        assert entry["error"].startswith("MalformedMessageError: not JSON")
        text = runner.invoke(cli, ["dlq", "list", "job_logs"], env=env)
        assert text.exit_code == 0 and "malformed" in text.stdout, text.output

        replayed = runner.invoke(cli, ["dlq", "replay", "job_logs", "--json"], env=env)
        assert replayed.exit_code == 0, replayed.output
        assert json.loads(replayed.stdout)["replayed"] == 1
        again = runner.invoke(cli, ["dlq", "replay", "job_logs"], env=env)
        assert again.exit_code == 0 and "nothing to replay" in again.stdout, again.output
        # Still listed: replaying does not delete dead letters.
        listed = runner.invoke(cli, ["dlq", "list", "job_logs", "--json"], env=env)
        assert len(json.loads(listed.stdout)) == 1
    finally:
        delete_topics(settings, topics)
