"""Settings of the execution-worker."""

from __future__ import annotations

from pydantic import Field

from chronoverse.settings import (
    DockerSettings,
    HealthSettings,
    KafkaSettings,
    PostgresSettings,
    RedisSettings,
)


class Settings(PostgresSettings, KafkaSettings, RedisSettings, DockerSettings, HealthSettings):
    """Everything the execution-worker reads from the environment."""

    health_port: int = Field(
        9103, ge=0, le=65535, description="Port of /healthz, /readyz and /metrics."
    )
