"""Topic administration. Topics are created explicitly; brokers must not auto-create them."""

from __future__ import annotations

import logging
from collections.abc import Iterable

import confluent_kafka
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from chronoverse.errors import KafkaError
from chronoverse.kafka.config import common_config
from chronoverse.settings import KafkaSettings

logger = logging.getLogger(__name__)


def _admin(settings: KafkaSettings) -> AdminClient:
    return AdminClient(common_config(settings, client_id="chronoverse-admin"))


def list_topics(settings: KafkaSettings, *, timeout_s: float = 5.0) -> set[str]:
    try:
        metadata = _admin(settings).list_topics(timeout=timeout_s)
    except confluent_kafka.KafkaException as exc:
        raise KafkaError(
            f"cannot list topics at {settings.kafka_bootstrap_servers}: {exc}"
        ) from exc
    return set(metadata.topics)


def ensure_topics(
    settings: KafkaSettings,
    topics: Iterable[str],
    *,
    partitions: int | None = None,
    timeout_s: float = 10.0,
) -> list[str]:
    """Create the topics that do not exist yet; return the ones this call created."""
    wanted = sorted(set(topics))
    missing = [t for t in wanted if t not in list_topics(settings, timeout_s=timeout_s)]
    if not missing:
        return []
    admin = _admin(settings)
    futures = admin.create_topics(
        [
            NewTopic(
                topic,
                num_partitions=partitions or settings.kafka_topic_partitions,
                replication_factor=settings.kafka_topic_replication_factor,
            )
            for topic in missing
        ],
        request_timeout=timeout_s,
    )
    created: list[str] = []
    for topic, future in futures.items():
        try:
            future.result(timeout=timeout_s)
            created.append(topic)
        except TimeoutError as exc:
            raise KafkaError(f"creating topic {topic!r} timed out") from exc
        except confluent_kafka.KafkaException as exc:
            error = exc.args[0] if exc.args else None
            if (
                getattr(error, "code", lambda: None)()
                == confluent_kafka.KafkaError.TOPIC_ALREADY_EXISTS
            ):
                continue  # another process created it first
            raise KafkaError(f"cannot create topic {topic!r}: {exc}") from exc
    logger.info("created topics %s", created, extra={"action": "topics_created"})
    return sorted(created)


def delete_topics(
    settings: KafkaSettings, topics: Iterable[str], *, timeout_s: float = 10.0
) -> None:
    admin = _admin(settings)  # keep the handle alive until the futures resolve
    futures = admin.delete_topics(list(topics), request_timeout=timeout_s)
    for topic, future in futures.items():
        try:
            future.result(timeout=timeout_s)
        except (confluent_kafka.KafkaException, TimeoutError) as exc:
            raise KafkaError(f"cannot delete topic {topic!r}: {exc}") from exc
