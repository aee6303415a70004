"""The Prometheus metrics of the Kafka consumers, labelled by consumer group."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

MESSAGES = Counter(
    "chronoverse_kafka_messages",
    "Messages taken from Kafka, by outcome (handled, malformed, failed: one count per failure).",
    ["group", "topic", "outcome"],
)
DEAD_LETTERS = Counter(
    "chronoverse_kafka_dead_letters",
    "Messages written to a dead-letter topic (<topic>.dlq), by reason (malformed, handler_failed).",
    ["group", "topic", "reason"],
)
IN_FLIGHT = Gauge(
    "chronoverse_kafka_in_flight", "Messages being handled or waiting for a retry.", ["group"]
)
PAUSES = Counter(
    "chronoverse_kafka_pauses", "Times the consumer paused under back-pressure.", ["group"]
)
ASSIGNED = Gauge(
    "chronoverse_kafka_assigned_partitions",
    "Partitions the group has assigned to this consumer (0: it consumes nothing).",
    ["group"],
)
