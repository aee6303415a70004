"""Settings: one frozen model per service, read once from the environment and passed down.

Every setting is an environment variable ``CHRONOVERSE_<FIELD>``. Services build their settings
in ``__main__`` with :meth:`BaseSettings.from_environ` and never read the environment elsewhere.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
import re
from collections.abc import Mapping
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from chronoverse.domain import DEAD_LETTER_SUFFIX, Topic
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
            message = str(first["msg"]).removeprefix("Value error, ")
            raise ConfigurationError(f"{ENV_PREFIX}{field.upper()}", message) from exc


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
        "crash fast; `make services` writes 6000 for dev and test. A consumer that holds no "
        "partition for 3 times this long reports not ready (`kafka_assignment` on `/readyz`).",
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
    kafka_handler_retries: int = Field(
        10,
        ge=0,
        le=100,
        description="How many times a consumer retries a message whose handler fails, with "
        "exponential backoff, before it writes the message to `<topic>.dlq` and moves on. A "
        "failed batch is first split, so that each message is retried on its own. With the "
        "default delays a message is dead-lettered only after failing for about 5 minutes, "
        "far longer than a database or Docker restart (see docs/operations.md).",
    )
    kafka_handler_retry_base_delay_s: float = Field(
        1.0,
        gt=0,
        le=3600,
        description="Delay before a failed message's first retry; it doubles with each retry.",
    )
    kafka_handler_retry_max_delay_s: float = Field(
        60.0,
        gt=0,
        le=3600,
        description="Longest delay between two retries of a failed message.",
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

    def dead_letter_topic(self, topic: Topic) -> str:
        """The broker-side name of the topic that receives ``topic``'s dead letters."""
        return f"{self.topic(topic)}{DEAD_LETTER_SUFFIX}"

    def all_topics(self) -> list[str]:
        """Every topic Chronoverse uses, dead-letter topics included."""
        return [name for t in Topic for name in (self.topic(t), self.dead_letter_topic(t))]

    @property
    def kafka_assignment_timeout_s(self) -> float:
        """How long a consumer may hold no partition before it reports not ready."""
        return 3 * self.kafka_session_timeout_ms / 1000


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


class SecretSettings(BaseSettings):
    secret_keys: str = Field(
        "",
        validate_default=True,
        description="Required by the server, the workflow worker, the execution worker and "
        "`chronoverse migrate`. Comma-separated Fernet keys that encrypt secret values (CONTAINER "
        "`env`, HEARTBEAT `headers`) in Postgres and cached definitions in Redis. The first key "
        "encrypts; every key decrypts, so a key is rotated by putting a new one first, running "
        "`chronoverse secrets rotate`, then removing the old one. Make one with "
        "`chronoverse secrets generate-key`. `make services` writes one to `.run/env`.",
    )

    @field_validator("secret_keys")
    @classmethod
    def _fernet_keys(cls, value: str) -> str:
        keys = [k.strip() for k in value.split(",") if k.strip()]
        if not keys:
            raise ValueError(
                "is required: make a key with `chronoverse secrets generate-key` (or "
                "python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())') and set CHRONOVERSE_SECRET_KEYS to it"
            )
        for index, key in enumerate(keys, start=1):
            try:
                base64.urlsafe_b64decode(key.encode())
                valid = len(base64.urlsafe_b64decode(key.encode())) == 32
            except (ValueError, binascii.Error):
                valid = False
            if not valid:
                raise ValueError(
                    f"key {index} is not a Fernet key (32 url-safe base64-encoded bytes); make "
                    "one with `chronoverse secrets generate-key`"
                )
        return ",".join(keys)

    @property
    def secret_key_list(self) -> list[str]:
        return self.secret_keys.split(",")


DEFAULT_PUBLIC_URL = "http://localhost:8080"


class PublicUrlSettings(BaseSettings):
    public_url: str = Field(
        DEFAULT_PUBLIC_URL,
        pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$",
        description="The address users reach this installation's HTTP API and pages at (no "
        "query or fragment). The links of webhook payloads are made absolute with it; give "
        "the server, the workflow worker and the execution worker the same value.",
    )

    @property
    def public_base_url(self) -> str:
        """``public_url`` without a trailing slash, for joining with an absolute path."""
        return self.public_url.rstrip("/")


class InstallationSettings(BaseSettings):
    installation: str = Field(
        "default",
        pattern=r"^[A-Za-z0-9._-]{1,100}$",
        description="Name of this installation, put on every container and volume it creates: "
        "the reaper and the volume janitor only remove their own installation's when several "
        "share a Docker engine. Give the workflow and execution workers the same value.",
    )


class ContainerSettings(BaseSettings):
    """What a CONTAINER job may ask for: the operator's ceilings, networks and sandbox."""

    container_networks: str = Field(
        "none",
        description="Comma-separated Docker networks a CONTAINER payload may name in `network`; "
        "the first is the default. `host` and `container:…` are never allowed.",
    )
    container_max_memory_mb: int = Field(
        2048, ge=256, le=1048576, description="Most memory (MiB) a payload may ask for."
    )
    container_max_cpus: float = Field(
        2.0, ge=1.0, le=256, description="Most CPUs a payload may ask for."
    )
    container_max_pids: int = Field(
        1024, ge=256, le=4194304, description="Most processes (pids limit) a payload may ask for."
    )
    container_max_timeout_s: int = Field(
        6 * 3600, ge=3600, le=7 * 24 * 3600, description="Longest timeout a payload may ask for."
    )
    container_user: str = Field(
        "65534:65534",
        pattern=r"^(image|[0-9]{1,10}(:[0-9]{1,10})?)$",
        description="The `uid:gid` every job container runs as (default: nobody, never root). "
        "`image` keeps the user the image declares, which may be root; allow it only for "
        "images you trust.",
    )
    container_tmpfs_mb: int = Field(
        64,
        ge=1,
        le=65536,
        description="Size of the writable tmpfs at `/tmp` (and at the working dir, when the "
        "payload gives one): the root filesystem of a job container is read-only.",
    )
    container_nofile: int = Field(
        1024, ge=64, le=1048576, description="Open files limit (`nofile` ulimit) of a job."
    )
    container_max_volumes: int = Field(
        4, ge=0, le=64, description="Most named volumes one CONTAINER payload may mount."
    )
    definition_cache_ttl_s: int = Field(
        86400,
        ge=60,
        description="How long a built CONTAINER definition stays cached in Redis; an expired "
        "one is rebuilt from Postgres by the next job (and deleted with its workflow).",
    )
    max_volumes_per_user: int = Field(
        10, ge=0, le=10000, description="Most named volumes one user may own."
    )

    @field_validator("container_networks")
    @classmethod
    def _networks(cls, value: str) -> str:
        names = [n.strip() for n in value.split(",") if n.strip()]
        if not names:
            raise ValueError("name at least one network (e.g. `none`)")
        for name in names:
            if name == "host" or name.startswith("container:"):
                raise ValueError(
                    f"{name!r} is never allowed: it would give jobs the host's or another "
                    "container's network"
                )
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}", name):
                raise ValueError(f"{name!r} is not a Docker network name")
        return ",".join(names)

    @property
    def container_network_list(self) -> tuple[str, ...]:
        return tuple(self.container_networks.split(","))


def split_host_port(text: str, default_port: int | None = None) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` (the port may be left out when there is a default)."""
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(f"{text!r} is not `host:port` (IPv6 goes in brackets)")
        port_text = rest[1:]
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    elif ":" in text:
        raise ValueError(f"{text!r}: put an IPv6 address in brackets, e.g. `[::1]:5432`")
    else:
        host, port_text = text, ""
    if not host:
        raise ValueError(f"{text!r} has no host")
    if not port_text:
        if default_port is None:
            raise ValueError(f"{text!r} has no port")
        return host, default_port
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"{text!r} has no valid port (1-65535)")
    return host, int(port_text)


class QuotaSettings(BaseSettings):
    """Per-user bounds that the server (manual runs) and the scheduler (automatic jobs) share."""

    max_active_jobs_per_user: int = Field(
        1000,
        ge=1,
        description=(
            "Jobs one user may have PENDING, QUEUED or RUNNING at once, manual and automatic "
            "alike. A manual run past it gets 409 `quota_exceeded`; an automatic slot past it "
            "is not run and is recorded in the fire ledger as a QUOTA skip."
        ),
    )


class EgressSettings(BaseSettings):
    egress_allow_cidrs: str = Field(
        "",
        description="Comma-separated CIDRs (e.g. `10.0.0.0/8,127.0.0.0/8,::1/128`) that HEARTBEAT "
        "endpoints may reach besides public addresses. Loopback, private, shared (CGNAT) and other "
        "non-public addresses are refused unless listed here. Empty (the default): public "
        "addresses only. Link-local and cloud-metadata, unspecified, multicast and broadcast "
        "addresses, and the stack's own Postgres, Redis, Kafka, Docker and health ports, are "
        "refused whatever this says. `make services` writes `127.0.0.0/8,::1/128` for dev and "
        "test, so that local services can be monitored.",
    )
    egress_deny: str = Field(
        "",
        description="Comma-separated `host:port` endpoints that HEARTBEATs may never reach, on top "
        "of the stack's own services (found from the other settings). The host is a name "
        "(resolved once at start), an address or a CIDR, IPv6 in brackets: e.g. "
        "`vault.internal:8200,[fd00::/8]:6379,10.0.0.0/8:9200`.",
    )

    @field_validator("egress_allow_cidrs")
    @classmethod
    def _cidrs(cls, value: str) -> str:
        items = [item.strip() for item in value.split(",") if item.strip()]
        for item in items:
            try:
                ipaddress.ip_network(item, strict=True)
            except ValueError as exc:
                raise ValueError(f"{item!r} is not a CIDR such as 10.0.0.0/8: {exc}") from exc
        return ",".join(items)

    @field_validator("egress_deny")
    @classmethod
    def _endpoints(cls, value: str) -> str:
        items = [item.strip() for item in value.split(",") if item.strip()]
        for item in items:
            host, _ = split_host_port(item)
            if "/" in host:
                try:
                    ipaddress.ip_network(host, strict=True)
                except ValueError as exc:
                    raise ValueError(f"{item!r}: {host!r} is not a CIDR: {exc}") from exc
        return ",".join(items)

    @property
    def egress_allow_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return tuple(
            ipaddress.ip_network(item) for item in self.egress_allow_cidrs.split(",") if item
        )

    @property
    def egress_deny_endpoints(self) -> tuple[tuple[str, int], ...]:
        """``(host, port)`` pairs; the host is a name, an address or a CIDR."""
        return tuple(split_host_port(item) for item in self.egress_deny.split(",") if item)
