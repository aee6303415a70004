"""Settings: one frozen model per service, read once from the environment and passed down.

Every setting is an environment variable ``CHRONOVERSE_<FIELD>``. Services build their settings
in ``__main__`` with :meth:`BaseSettings.from_environ` and never read the environment elsewhere.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from chronoverse.domain import Topic
from chronoverse.errors import ConfigurationError

ENV_PREFIX = "CHRONOVERSE_"


class BaseSettings(BaseModel):
    """Settings every Chronoverse process shares."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Lowest level of log records written to stderr."
    )
    log_format: Literal["auto", "json", "text"] = Field(
        "auto",
        description="`json` for one JSON object per line, `text` for humans; "
        "`auto` picks text on a TTY and JSON otherwise.",
    )

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Self:
        """Build settings from ``CHRONOVERSE_*`` variables (default: ``os.environ``)."""
        source = os.environ if environ is None else environ
        values: dict[str, Any] = {
            key[len(ENV_PREFIX) :].lower(): value
            for key, value in source.items()
            if key.startswith(ENV_PREFIX)
        }
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(part) for part in first["loc"])
            raise ConfigurationError(f"{ENV_PREFIX}{field.upper()}", first["msg"]) from exc


class PostgresSettings(BaseSettings):
    database_url: str = Field(
        "postgresql://chronoverse:chronoverse@127.0.0.1:5432/chronoverse",
        description="libpq connection URL of the Postgres database.",
    )
    database_pool_min_size: int = Field(1, ge=0, description="Connections kept open in the pool.")
    database_pool_max_size: int = Field(10, ge=1, description="Most connections the pool opens.")


class KafkaSettings(BaseSettings):
    kafka_bootstrap_servers: str = Field(
        "127.0.0.1:9092", description="Comma-separated `host:port` list of Kafka brokers."
    )
    kafka_session_timeout_ms: int = Field(
        10000,
        ge=1000,
        description="Consumer group session timeout. Small values make rebalances after a "
        "crash fast; `make services` writes 6000 for dev and test.",
    )
    kafka_fetch_wait_max_ms: int = Field(
        500,
        ge=1,
        le=60000,
        description="Longest time a consumer's fetch may wait at the broker for new messages "
        "(librdkafka `fetch.wait.max.ms`). Apache Kafka answers as soon as a message arrives; a "
        "broker that holds the fetch for the whole wait (tansu, used in dev) adds up to this "
        "much latency to every message, so set it low there; `make services` writes 20 for dev "
        "and test.",
    )
    kafka_topic_partitions: int = Field(
        6, ge=1, description="Partitions for topics that `chronoverse topics create` makes."
    )
    kafka_topic_replication_factor: int = Field(
        1, ge=1, description="Replication factor for topics that Chronoverse creates."
    )
    kafka_topic_prefix: str = Field(
        "",
        pattern=r"^[A-Za-z0-9._-]*$",
        description="Prefix of every topic and consumer group name (e.g. `staging.` gives "
        "`staging.jobs`), so several installations or test runs can share a broker.",
    )

    def topic(self, topic: Topic) -> str:
        """The broker-side name of one of Chronoverse's topics."""
        return f"{self.kafka_topic_prefix}{topic.value}"

    def group(self, name: str) -> str:
        """The broker-side name of a consumer group: installations sharing a broker must not
        share groups, or one's rebalances would stall the other's consumers."""
        return f"{self.kafka_topic_prefix}{name}"

    def all_topics(self) -> list[str]:
        return [self.topic(t) for t in Topic]


class RedisSettings(BaseSettings):
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Redis connection URL.")


class DockerSettings(BaseSettings):
    docker_host: str | None = Field(
        None,
        description="Docker engine URL, e.g. `unix:///var/run/docker.sock` or "
        "`tcp://socket-proxy:2375`. Unset: the standard `DOCKER_HOST` lookup.",
    )


class HealthSettings(BaseSettings):
    health_host: str = Field(
        "0.0.0.0", description="Address of the /healthz, /readyz and /metrics listener."
    )
    health_port: int = Field(
        9100, ge=0, le=65535, description="Port of that listener (0: any free port)."
    )
