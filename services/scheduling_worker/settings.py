"""Settings of the scheduling-worker."""

from __future__ import annotations

from pydantic import Field

from chronoverse.settings import HealthSettings, KafkaSettings, PostgresSettings


class Settings(PostgresSettings, KafkaSettings, HealthSettings):
    """Everything the scheduling-worker reads from the environment."""

    health_port: int = Field(
        9101, ge=0, le=65535, description="Port of /healthz, /readyz and /metrics."
    )
    poll_interval_s: float = Field(
        0.5,
        gt=0,
        le=1.0,
        description="Longest wait between scheduling passes; NOTIFY wakes the worker sooner.",
    )
    schedule_batch_size: int = Field(
        1000, ge=1, description="Due workflows claimed per transaction."
    )
    dispatch_batch_size: int = Field(
        2000, ge=1, description="Pending jobs published per transaction."
    )
    outbox_batch_size: int = Field(500, ge=1, description="Outbox events relayed per transaction.")
    publish_timeout_s: float = Field(
        30.0,
        gt=0,
        description="How long the broker may take to confirm a message before the "
        "batch counts as not delivered (it is sent again on the next pass).",
    )
    requeue_after_s: float = Field(
        120.0,
        gt=0,
        description="A QUEUED job no worker claimed this long after it was published is "
        "published again (its message may have been lost with a broker's data).",
    )
    outbox_retention_s: float = Field(
        86400.0, gt=0, description="Published outbox events are deleted after this long."
    )
    sweep_interval_s: float = Field(
        5.0, gt=0, description="How often to look for QUEUED jobs to publish again."
    )
