"""librdkafka configuration dictionaries, built from settings in one place."""

from __future__ import annotations

from typing import Any

from chronoverse.settings import KafkaSettings


def common_config(settings: KafkaSettings, *, client_id: str) -> dict[str, Any]:
    return {
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        "client.id": client_id,
        # Surface an unreachable broker as errors instead of retrying silently forever.
        "socket.connection.setup.timeout.ms": 10000,
    }


def consumer_config(settings: KafkaSettings, *, client_id: str, group_id: str) -> dict[str, Any]:
    return {
        **common_config(settings, client_id=client_id),
        "group.id": group_id,
        # Offsets are committed by hand, and only after the outcome is recorded.
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": settings.kafka_session_timeout_ms,
        "heartbeat.interval.ms": max(500, settings.kafka_session_timeout_ms // 4),
        "fetch.wait.max.ms": settings.kafka_fetch_wait_max_ms,
        "allow.auto.create.topics": False,
        # Notice re-created topics (after a broker lost its data) within seconds, not minutes.
        "topic.metadata.refresh.interval.ms": 5000,
    }


def producer_config(settings: KafkaSettings, *, client_id: str) -> dict[str, Any]:
    return {
        **common_config(settings, client_id=client_id),
        # Idempotence: broker-side de-duplication of retried sends, acks from all replicas.
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
    }
