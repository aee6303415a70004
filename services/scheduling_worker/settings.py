"""Settings of the scheduling-worker."""

from __future__ import annotations

from pydantic import Field

from chronoverse.settings import HealthSettings, KafkaSettings, PostgresSettings


class Settings(PostgresSettings, KafkaSettings, HealthSettings):
    """Everything the scheduling-worker reads from the environment."""

    health_port: int = Field(
        9101, ge=0, le=65535, description="Port of /healthz, /readyz and /metrics."
    )
