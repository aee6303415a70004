"""Settings of the workflow-worker."""

from __future__ import annotations

from pydantic import Field

from chronoverse.settings import (
    ContainerSettings,
    DockerSettings,
    HealthSettings,
    InstallationSettings,
    KafkaSettings,
    PostgresSettings,
    PublicUrlSettings,
    RedisSettings,
    SecretSettings,
)


class Settings(
    PostgresSettings,
    KafkaSettings,
    RedisSettings,
    DockerSettings,
    HealthSettings,
    SecretSettings,
    ContainerSettings,
    InstallationSettings,
    PublicUrlSettings,
):
    """Everything the workflow-worker reads from the environment."""

    health_port: int = Field(
        9102, ge=0, le=65535, description="Port of /healthz, /readyz and /metrics."
    )
    pull_lock_ttl_s: float = Field(
        30.0,
        gt=0,
        description="TTL of the Redis lock one worker holds while it pulls an image "
        "(renewed every third of it); other workers wait for the pull.",
    )
    pull_wait_s: float = Field(
        600.0, gt=0, description="Longest wait for another worker's pull of the same image."
    )
    docker_retry_s: float = Field(
        30.0,
        ge=0,
        le=600,
        description="How long builds (and the stopping of a terminated workflow's containers) "
        "retry, with backoff, while the Docker engine is unreachable or answers 5xx, e.g. during "
        "a restart, counted from when it began failing; then a build fails with the reason.",
    )
    stop_grace_s: int = Field(
        10,
        ge=0,
        description="When a workflow is terminated: seconds between SIGTERM and "
        "SIGKILL for its running containers.",
    )
