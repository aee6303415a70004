"""Settings of the server."""

from __future__ import annotations

from pydantic import Field, field_validator

from chronoverse.accounts import RegistrationPolicy
from chronoverse.settings import (
    ContainerSettings,
    EgressSettings,
    HealthSettings,
    PostgresSettings,
    PublicUrlSettings,
    QuotaSettings,
    RedisSettings,
    SecretSettings,
)
from services.server.throttle import parse_rate


class Settings(
    PostgresSettings,
    RedisSettings,
    SecretSettings,
    EgressSettings,
    ContainerSettings,
    PublicUrlSettings,
    HealthSettings,
    QuotaSettings,
):
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
    registration: RegistrationPolicy = Field(
        RegistrationPolicy.FIRST_USER,
        description=(
            "Who may create an account through the API: `open` (anyone), `closed` (nobody; "
            "operators run `chronoverse users create`), or `first-user` (only while no user "
            "exists, so whoever installs it becomes its first user, and it is closed after)."
        ),
    )
    auth_rate_limit_per_ip: str = Field(
        "30/minute",
        description=(
            "Login attempts, and separately registrations, one client address may make, as "
            "`<count>/<second|minute|hour|day>` (shared by every server process through Redis). "
            "Past it: 429 with Retry-After."
        ),
    )
    auth_rate_limit_per_email: str = Field(
        "10/minute",
        description=(
            "Login attempts, and separately registrations, for one email, from any address, "
            "in the same form. Past it: 429 with Retry-After."
        ),
    )
    password_hash_concurrency: int = Field(
        2,
        ge=1,
        description=(
            "Argon2 password hashes (64 MiB each) computed at once by one server process; "
            "logins and registrations beyond it wait for a slot."
        ),
    )
    password_hash_wait_s: float = Field(
        0.5,
        gt=0,
        description="How long a login or registration waits for a hashing slot before 503.",
    )
    max_streams_per_user: int = Field(
        50,
        ge=1,
        description=(
            "Live log streams (SSE and gRPC) one user may have open at once, across every "
            "server process (counted in Redis). Past it: 429."
        ),
    )
    log_stream_threads: int = Field(
        4,
        ge=1,
        description=(
            "Threads that read Postgres for the live log viewers of one server process (each "
            "holds a pool connection while it reads); viewers hold no thread while they wait."
        ),
    )
    grpc_max_streams: int = Field(
        32,
        ge=1,
        description=(
            "gRPC StreamLogs calls one server process serves at once, on threads of their own "
            "besides CHRONOVERSE_GRPC_MAX_WORKERS, so streams never starve unary calls. Past "
            "it: RESOURCE_EXHAUSTED."
        ),
    )
    public_metrics: bool = Field(
        False,
        description=(
            "Also serve /metrics, and /readyz's check of each dependency, on the public HTTP "
            "port. Off: they are on the health port (CHRONOVERSE_HEALTH_PORT) only, and the "
            "public /readyz says just `ready` or `not_ready`."
        ),
    )
    shutdown_grace_s: float = Field(
        10.0, ge=0, description="Seconds in-flight requests get to finish after SIGTERM."
    )
    max_workflows_per_user: int = Field(
        1000,
        ge=1,
        description=(
            "Workflows one user may have (terminated ones count until deleted); creating one "
            "more gets 409 `quota_exceeded`."
        ),
    )
    manual_runs_per_minute: int = Field(
        60,
        ge=1,
        description=(
            "Manual runs (`POST /workflows/{id}/jobs`) one user may start per minute, counted "
            "in Redis for every server process; past it: 429 `rate_limited` with Retry-After. "
            "A replayed Idempotency-Key does not count."
        ),
    )
    max_webhooks_per_user: int = Field(
        20,
        ge=1,
        le=1000,
        description="Webhook endpoints one user may have (`POST /webhooks` gives 409 beyond it).",
    )

    @field_validator("auth_rate_limit_per_ip", "auth_rate_limit_per_email")
    @classmethod
    def _rate(cls, value: str) -> str:
        parse_rate(value)
        return value
