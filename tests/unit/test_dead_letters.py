"""Retrying failed messages and the dead-letter format: pure decisions, no broker."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from chronoverse.domain import Topic
from chronoverse.errors import MalformedMessageError
from chronoverse.kafka.deadletters import (
    DeadLetter,
    DeadLetterReason,
    dead_letter_topic,
    describe_error,
)
from chronoverse.kafka.failures import GiveUp, Retry, RetryPolicy
from chronoverse.settings import KafkaSettings

DEFAULTS = RetryPolicy.from_settings(KafkaSettings())


def test_the_default_delays_double_up_to_a_minute() -> None:
    assert [DEFAULTS.delay_s(n) for n in range(1, 11)] == [1, 2, 4, 8, 16, 32, 60, 60, 60, 60]
    assert DEFAULTS.delay_s(10_000) == 60


def test_by_default_a_message_is_given_up_on_after_five_minutes_not_after_an_outage() -> None:
    # A Postgres or Docker restart takes seconds; the handlers retry the database for a minute
    # on their own. Five minutes of retries outlast either several times over.
    assert DEFAULTS.retries == 10
    assert DEFAULTS.patience_s() == 303


def test_a_failed_batch_is_split_at_once_whatever_the_retries() -> None:
    for policy in (DEFAULTS, RetryPolicy(retries=0, base_delay_s=1, max_delay_s=1)):
        assert policy.after_failure(messages=5, failures=1) == Retry(delay_s=1, split=True)
        assert policy.after_failure(messages=2, failures=99).split  # type: ignore[union-attr]


def test_a_single_message_is_retried_then_given_up_on() -> None:
    policy = RetryPolicy(retries=3, base_delay_s=0.5, max_delay_s=1.5)
    steps = [policy.after_failure(messages=1, failures=n) for n in range(1, 6)]
    assert steps == [
        Retry(delay_s=0.5, split=False),
        Retry(delay_s=1.0, split=False),
        Retry(delay_s=1.5, split=False),
        GiveUp(),
        GiveUp(),
    ]
    assert (
        RetryPolicy(retries=0, base_delay_s=1, max_delay_s=1).after_failure(messages=1, failures=1)
        == GiveUp()
    )


def test_dead_letter_topics_follow_the_topic_prefix() -> None:
    settings = KafkaSettings(kafka_topic_prefix="staging.")
    assert settings.dead_letter_topic(Topic.JOB_LOGS) == "staging.job_logs.dlq"
    assert dead_letter_topic(settings.topic(Topic.JOBS)) == "staging.jobs.dlq"
    assert settings.all_topics() == [
        "staging.workflows",
        "staging.workflows.dlq",
        "staging.jobs",
        "staging.jobs.dlq",
        "staging.job_logs",
        "staging.job_logs.dlq",
    ]


def letter(**changes: object) -> DeadLetter:
    fields: dict[str, object] = {
        "topic": "t1.job_logs",
        "partition": 3,
        "offset": 42,
        "key": b"\xffkey",
        "value": b'{"v": 1}',
        "timestamp_ms": 1_700_000_000_123,
        "group": "t1.chronoverse-log-processor",
        "reason": DeadLetterReason.HANDLER_FAILED,
        "error": "ValueError: negative seq",
        "attempts": 11,
        "dead_lettered_at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        **changes,
    }
    return DeadLetter(**fields)  # type: ignore[arg-type]


def test_a_dead_letter_keeps_the_message_and_says_where_from_and_why_in_headers() -> None:
    original = letter()
    headers = dict(original.headers())
    assert headers == {
        "chronoverse.dlq.topic": b"t1.job_logs",
        "chronoverse.dlq.partition": b"3",
        "chronoverse.dlq.offset": b"42",
        "chronoverse.dlq.timestamp_ms": b"1700000000123",
        "chronoverse.dlq.group": b"t1.chronoverse-log-processor",
        "chronoverse.dlq.reason": b"handler_failed",
        "chronoverse.dlq.error": b"ValueError: negative seq",
        "chronoverse.dlq.attempts": b"11",
        "chronoverse.dlq.at": b"2026-01-02T03:04:05+00:00",
    }
    assert DeadLetter.from_message(b"\xffkey", b'{"v": 1}', original.headers()) == original
    untimed = letter(timestamp_ms=None, key=None, value=None)
    assert DeadLetter.from_message(None, None, untimed.headers()) == untimed


def test_a_message_without_the_headers_is_not_a_dead_letter() -> None:
    with pytest.raises(MalformedMessageError, match="not a dead letter"):
        DeadLetter.from_message(b"k", b"v", [("other", b"x")])
    with pytest.raises(MalformedMessageError):
        DeadLetter.from_message(
            b"k", b"v", [*letter().headers()[:-1], ("chronoverse.dlq.at", b"?")]
        )


def test_the_error_names_the_exception_and_is_bounded() -> None:
    assert describe_error(MalformedMessageError("not JSON")) == "MalformedMessageError: not JSON"
    assert describe_error(RecursionError("too deep")) == "RecursionError: too deep"
    assert len(describe_error(ValueError("x" * 10_000))) == 2000
