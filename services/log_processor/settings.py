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
    log_purge_grace_s: float = Field(
        60.0,
        ge=0,
        description="For workflows with `retain_logs` false: how long an attempt's lines stay "
        "after its end marker is stored, so that live viewers who lost their connection can "
        "resume (Last-Event-ID) without a gap. Then they are deleted.",
    )
    log_purge_interval_s: float = Field(
        5.0, gt=0, description="How often the log-processor deletes lines whose grace has passed."
    )
    log_purge_batch_lines: int = Field(
        10_000,
        ge=1,
        description="Most lines one statement of that deletion deletes (each in a transaction of "
        "its own): a job with millions of lines goes in many short statements.",
    )
