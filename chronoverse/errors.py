"""The one exception hierarchy of Chronoverse.

Every error raised on purpose derives from :class:`ChronoverseError`. Subclasses carry structured
fields; callers chain the cause with ``raise ... from exc``.
"""

from __future__ import annotations


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


class HandlerError(ChronoverseError):
    """A consumer's message handler raised; the batch stays uncommitted and is redelivered."""

    def __init__(self, topic: str, partition: int, offsets: tuple[int, ...]) -> None:
        super().__init__(f"handler failed on {topic}[{partition}] offsets {list(offsets)}")
        self.topic = topic
        self.partition = partition
        self.offsets = offsets
