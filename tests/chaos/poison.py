"""Poison messages: what no consumer can handle, and how many dead letters each topic should get.

Each topic gets a message that fails to decode in a way other than a plain JSON error (deeply
nested JSON: ``RecursionError``), one that is not UTF-8, and a valid-JSON message that the
consumer cannot act on: a log line with a negative ``seq`` (Postgres refuses it every time), a
workflow event whose generation is infinite (``int(inf)`` raises ``OverflowError``), and a job
message naming a job that does not exist (to be skipped, not dead-lettered).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

import confluent_kafka

from chronoverse.domain import Topic
from chronoverse.settings import KafkaSettings

NESTED = b"[" * 100_000 + b"]" * 100_000  # far past Python's recursion limit, under 1 MB
NOT_UTF8 = b'{"v": 1, "type": "\xff\xfe\xfd", "job_id": "\xc3\x28"}'


@dataclass(frozen=True, kw_only=True)
class Poison:
    topic: Topic
    what: str
    key: bytes
    value: bytes
    dead_letter: bool  # whether it must end in `<topic>.dlq`


def poisons(log_job: UUID, workflow: UUID, user: UUID) -> list[Poison]:
    """The poison messages; ``log_job`` is a real job (so that a foreign key does not hide the
    negative seq), ``workflow`` and ``user`` real ids."""
    out = []
    for topic in Topic:
        key = str(log_job if topic is Topic.JOB_LOGS else workflow).encode()
        out.append(Poison(topic=topic, what="deeply nested JSON", key=key, value=NESTED,
                          dead_letter=True))  # fmt: skip
        out.append(Poison(topic=topic, what="invalid UTF-8", key=key, value=NOT_UTF8,
                          dead_letter=True))  # fmt: skip
    negative_seq = {
        "v": 1,
        "type": "log.lines",
        "job_id": str(log_job),
        "attempt": 1,
        "lines": [
            {"seq": -1, "stream": "stdout", "ts": datetime.now(UTC).isoformat(), "line": "poison"}
        ],
    }
    # json.dumps cannot write 1e999 (it writes Infinity, which is not JSON): spliced as text.
    event = {"v": 1, "type": "workflow.created", "workflow_id": str(workflow),
             "user_id": str(user), "kind": "CONTAINER", "generation": 0}  # fmt: skip
    infinite_generation = json.dumps(event).replace('"generation": 0', '"generation": 1e999')
    no_such_job = {
        "v": 1,
        "type": "job.ready",
        "job_id": str(uuid.uuid4()),
        "workflow_id": str(workflow),
    }
    out += [
        Poison(
            topic=Topic.JOB_LOGS,
            what="a log line with seq -1",
            key=str(log_job).encode(),
            value=json.dumps(negative_seq).encode(),
            dead_letter=True,
        ),
        Poison(
            topic=Topic.WORKFLOWS,
            what="a workflow event with generation 1e999",
            key=str(workflow).encode(),
            value=infinite_generation.encode(),
            dead_letter=True,
        ),
        Poison(
            topic=Topic.JOBS,
            what="a job message for a job that does not exist",
            key=str(workflow).encode(),
            value=json.dumps(no_such_job).encode(),
            dead_letter=False,
        ),
    ]
    return out


def send(settings: KafkaSettings, messages: list[Poison]) -> None:
    producer = confluent_kafka.Producer(
        {"bootstrap.servers": settings.kafka_bootstrap_servers, "message.max.bytes": 1_000_000}
    )
    for message in messages:
        producer.produce(settings.topic(message.topic), key=message.key, value=message.value)
    if producer.flush(30) != 0:
        raise AssertionError("the broker did not take the poison messages")


def dead_letters(settings: KafkaSettings, topic: Topic) -> int | None:
    """Messages in ``<topic>.dlq`` (None: the topic does not exist)."""
    name = settings.topic(topic) + ".dlq"
    consumer = confluent_kafka.Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "group.id": f"chaos-dlq-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
        }
    )
    try:
        metadata = consumer.list_topics(timeout=10)
        if name not in metadata.topics:
            return None
        total = 0
        for partition in metadata.topics[name].partitions:
            low, high = consumer.get_watermark_offsets(
                confluent_kafka.TopicPartition(name, partition), timeout=10
            )
            total += high - low
        return total
    finally:
        consumer.close()
