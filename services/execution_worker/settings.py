"""Settings of the execution-worker."""

from __future__ import annotations

import os
import socket

from pydantic import Field

from chronoverse.settings import (
    ContainerSettings,
    DockerSettings,
    EgressSettings,
    HealthSettings,
    InstallationSettings,
    KafkaSettings,
    PostgresSettings,
    PublicUrlSettings,
    RedisSettings,
    SecretSettings,
)


def _default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class Settings(
    PostgresSettings,
    KafkaSettings,
    RedisSettings,
    DockerSettings,
    HealthSettings,
    SecretSettings,
    ContainerSettings,
    EgressSettings,
    InstallationSettings,
    PublicUrlSettings,
):
    """Everything the execution-worker reads from the environment."""

    health_port: int = Field(
        9103, ge=0, le=65535, description="Port of /healthz, /readyz and /metrics."
    )
    worker_id: str = Field(
        default_factory=_default_worker_id,
        description="This worker's name in job leases (`lease_owner`). Default: hostname-pid.",
    )
    concurrency: int = Field(8, ge=1, le=256, description="Jobs this worker runs at once.")
    job_batch_size: int = Field(
        100,
        ge=1,
        le=1000,
        description="Job messages of one partition handled together. The liveness HEARTBEATs "
        "among them are claimed in one statement and recorded in one transaction; every other "
        "job is claimed and run on its own, at most `CHRONOVERSE_CONCURRENCY` at once.",
    )
    lease_s: float = Field(
        30.0,
        ge=1,
        description="Lease length. A worker renews its leases every third of it; a job whose "
        "lease lapses (its worker died) is recovered and retried.",
    )
    retry_max_attempts: int = Field(
        3,
        ge=1,
        description="Attempts for a job that fails for a SYSTEM reason before it counts "
        "as a failure.",
    )
    retry_base_delay_s: float = Field(
        2.0, ge=0, description="Backoff before the second attempt; doubles each attempt."
    )
    retry_max_delay_s: float = Field(60.0, ge=0, description="Longest backoff between attempts.")
    stop_grace_s: int = Field(
        10,
        ge=0,
        description="A timed-out container gets SIGTERM, then SIGKILL this many seconds later.",
    )
    max_log_chars_per_job: int = Field(
        64 * 1024 * 1024,
        ge=1024,
        description="Characters of output kept per job; the rest is "
        "dropped and a final line says how much.",
    )
    volume_sweep_interval_s: float = Field(
        60.0,
        gt=0,
        description="How often Docker volumes whose owner deleted them are removed, and the "
        "sizes `GET /volumes` shows are measured.",
    )
    reaper_interval_s: float = Field(
        30.0, gt=0, description="How often labelled containers without a live lease are removed."
    )
    shutdown_grace_s: float = Field(
        25.0,
        ge=0,
        description="After SIGTERM, how long running jobs get to finish; the ones still running "
        "are then handed back to PENDING for another worker (the attempt is not counted).",
    )
    webhook_max_attempts: int = Field(
        8,
        ge=1,
        le=50,
        description="HTTP attempts of one webhook delivery before it is FAILED.",
    )
    webhook_backoff_base_s: float = Field(
        5.0,
        gt=0,
        description="Webhook retry backoff: the wait after attempt n is random between 0 and "
        "base * 2^(n-1), at most `CHRONOVERSE_WEBHOOK_BACKOFF_MAX_S` (full jitter).",
    )
    webhook_backoff_max_s: float = Field(
        3600.0, gt=0, description="Longest wait between two attempts of a webhook delivery."
    )
    webhook_timeout_s: float = Field(
        10.0,
        gt=0,
        le=300,
        description="Deadline of one whole webhook attempt (connect, send, status line and "
        "headers), not a per-read timeout; a receiver that has not answered by then counts as a "
        "failed attempt (`no answer within N s`).",
    )
    webhook_concurrency: int = Field(
        4,
        ge=1,
        le=256,
        description="Webhook deliveries this worker sends at once, on threads and database "
        "connections of their own (jobs never wait for a receiver).",
    )
    webhook_poll_interval_s: float = Field(
        1.0,
        gt=0,
        le=60,
        description="How often the webhook delivery loop looks for due deliveries.",
    )
