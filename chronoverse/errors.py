"""The one exception hierarchy of Chronoverse.

Every error raised on purpose derives from :class:`ChronoverseError`. Subclasses carry structured
fields; callers chain the cause with ``raise ... from exc``.
"""

from __future__ import annotations

from dataclasses import dataclass


class ChronoverseError(Exception):
    """Base of every error Chronoverse raises on purpose."""


class ConfigurationError(ChronoverseError):
    """A setting is missing or invalid."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(f"{setting}: {message}")
        self.setting = setting
        self.message = message


class MigrationError(ChronoverseError):
    """The migrations on disk and the ones recorded in the database disagree, or one failed."""

    def __init__(self, message: str, *, version: int | None = None) -> None:
        super().__init__(message)
        self.version = version


class QueryNotFoundError(ChronoverseError):
    """A named SQL query is not in the queries file."""

    def __init__(self, name: str) -> None:
        super().__init__(f"no query named {name!r}")
        self.name = name


class MalformedMessageError(ChronoverseError):
    """A Kafka message could not be decoded; the consumer logs and skips it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class KafkaError(ChronoverseError):
    """The broker refused an operation or could not be reached."""


class PublishError(KafkaError):
    """A message was not confirmed by the broker."""

    def __init__(self, topic: str, key: str | None, reason: str) -> None:
        super().__init__(f"publish to {topic!r} (key {key!r}) failed: {reason}")
        self.topic = topic
        self.key = key
        self.reason = reason


@dataclass(frozen=True)
class FieldError:
    """One invalid field of a request, named by its dotted path (e.g. ``payload.env``)."""

    field: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


class InvalidFieldsError(ChronoverseError):
    """A request has invalid fields; each is named."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in errors))
        self.errors = errors


class NotFoundError(ChronoverseError):
    """The resource does not exist, or belongs to another user (indistinguishable on purpose)."""

    def __init__(self, resource: str, identifier: str) -> None:
        super().__init__(f"{resource} {identifier} not found")
        self.resource = resource
        self.identifier = identifier


class ConflictError(ChronoverseError):
    """The request contradicts the resource's state (e.g. updating a terminated workflow)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class QuotaExceededError(ConflictError):
    """The user is at a per-user quota (``quota``: its setting), e.g. workflows per user.

    A 409 ``quota_exceeded`` over HTTP (the request is valid; what the user has is in the way),
    ``RESOURCE_EXHAUSTED`` over gRPC.
    """

    def __init__(self, quota: str, limit: int, message: str) -> None:
        super().__init__("quota_exceeded", message)
        self.quota = quota
        self.limit = limit


class AuthenticationError(ChronoverseError):
    """No credentials, or credentials that are wrong, expired or revoked."""

    def __init__(self, message: str = "a valid bearer token is required") -> None:
        super().__init__(message)
        self.message = message


class EgressRefused(ChronoverseError):
    """The egress policy forbids a HEARTBEAT request to this endpoint; ``reason`` says why.

    ``public_reason`` is what the endpoint's owner may read: for a host name, not the address it
    resolved to (which would let a user map internal names); ``reason`` is for the operator's
    log.
    """

    def __init__(self, reason: str, *, public_reason: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.public_reason = public_reason or reason


class UnresolvableHostError(ChronoverseError):
    """A host name has no address (DNS failed or answered nothing)."""

    def __init__(self, host: str) -> None:
        super().__init__(f"could not resolve {host}")
        self.host = host


class ForbiddenError(ChronoverseError):
    """The caller may not do this at all (e.g. registration is closed); ``code`` says which."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class RateLimitedError(ChronoverseError):
    """Too many attempts from this client or for this account; try again in ``retry_after_s``."""

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after_s = max(1, retry_after_s)


class BusyError(ChronoverseError):
    """The server has no capacity for this now (e.g. every password-hashing slot is taken)."""

    def __init__(self, message: str, *, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after_s = max(1, retry_after_s)
