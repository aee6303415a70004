"""Settings of the server."""

from __future__ import annotations

from pydantic import Field

from chronoverse.settings import (
    ContainerSettings,
    EgressSettings,
    PostgresSettings,
    RedisSettings,
    SecretSettings,
)


class Settings(PostgresSettings, RedisSettings, SecretSettings, EgressSettings, ContainerSettings):
    """Everything the server reads from the environment."""

    http_host: str = Field("0.0.0.0", description="Address the HTTP API listens on.")
    http_port: int = Field(8080, ge=0, le=65535, description="Port of the HTTP API.")
    grpc_host: str = Field("0.0.0.0", description="Address the gRPC API listens on.")
    grpc_port: int = Field(50051, ge=0, le=65535, description="Port of the gRPC API.")
    grpc_max_workers: int = Field(8, ge=1, description="Threads serving gRPC calls.")
    max_request_bytes: int = Field(
        256 * 1024, ge=1024, description="Largest request body accepted; larger ones get 413."
    )
    idempotency_key_ttl_s: int = Field(
        86400, ge=60, description="How long an Idempotency-Key and its stored response are kept."
    )
    token_ttl_days: int = Field(
        30,
        ge=1,
        le=36500,
        description="Lifetime in days (1 to 36500) of a bearer token issued by login.",
    )
    sse_keepalive_s: float = Field(
        15.0, gt=0, description="Seconds between keep-alive comments on an idle log stream."
    )
    shutdown_grace_s: float = Field(
        10.0, ge=0, description="Seconds in-flight requests get to finish after SIGTERM."
    )
