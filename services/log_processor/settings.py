"""Settings of the log-processor."""

from __future__ import annotations

from pydantic import Field

from chronoverse.settings import HealthSettings, KafkaSettings, PostgresSettings, RedisSettings


class Settings(PostgresSettings, KafkaSettings, RedisSettings, HealthSettings):
    """Everything the log-processor reads from the environment."""

    health_port: int = Field(
        9104, ge=0, le=65535, description="Port of /healthz, /readyz and /metrics."
    )
    log_batch_messages: int = Field(
        500, ge=1, description="`job_logs` messages written to Postgres in one transaction."
    )
    log_concurrency: int = Field(2, ge=1, description="Batches written at once.")
