"""What a consumer does with messages whose handler failed: retry later, or dead-letter. Pure.

A failed batch of several messages is split at once, so that each is retried on its own: a poison
message delays its neighbours by one base delay, and never sends them to the dead-letter topic. A
message that fails on its own is retried with exponential backoff until its retries are used up,
then dead-lettered. The defaults (10 retries, 1 s doubling up to 60 s) give a message about five
minutes, much longer than a database or Docker restart, before it is given up on.
"""

from __future__ import annotations

from dataclasses import dataclass

from chronoverse.settings import KafkaSettings


@dataclass(frozen=True, kw_only=True)
class Retry:
    """Try again after ``delay_s``; ``split``: each message of the batch on its own."""

    delay_s: float
    split: bool


@dataclass(frozen=True, kw_only=True)
class GiveUp:
    """Write the message to the dead-letter topic and move on."""


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    retries: int
    base_delay_s: float
    max_delay_s: float

    @classmethod
    def from_settings(cls, settings: KafkaSettings) -> RetryPolicy:
        return cls(
            retries=settings.kafka_handler_retries,
            base_delay_s=settings.kafka_handler_retry_base_delay_s,
            max_delay_s=settings.kafka_handler_retry_max_delay_s,
        )

    def delay_s(self, failures: int) -> float:
        """The wait after the ``failures``-th failure (1-based): base, doubling, capped."""
        exponent = min(max(failures - 1, 0), 62)  # 2**62 seconds: capped long before
        return float(min(self.max_delay_s, self.base_delay_s * 2**exponent))

    def after_failure(self, *, messages: int, failures: int) -> Retry | GiveUp:
        """What to do with a batch of ``messages`` that has now failed ``failures`` times."""
        if messages > 1:
            return Retry(delay_s=self.delay_s(failures), split=True)
        if failures > self.retries:
            return GiveUp()
        return Retry(delay_s=self.delay_s(failures), split=False)

    def patience_s(self) -> float:
        """The total wait before a message that fails on every try is dead-lettered."""
        return sum(self.delay_s(n) for n in range(1, self.retries + 1))
