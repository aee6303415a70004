"""The pure webhook decisions: secrets, URL rules, signing, backoff with full jitter, and what a
user is told of a refused address."""

from __future__ import annotations

import base64
import socket
import ssl
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from chronoverse.egress import EgressPolicy
from chronoverse.webhooks import (
    EGRESS_REFUSED_ERROR,
    DeliveryStatus,
    RetryPolicy,
    backoff_s,
    decide_attempt,
    generate_secret,
    signed_headers,
    url_problem,
)
from services.execution_worker.webhooks import post

NOW = datetime(2025, 1, 1, tzinfo=UTC)
POLICY = RetryPolicy(max_attempts=4, base_delay_s=5, max_delay_s=30)


def test_a_secret_is_whsec_and_32_random_bytes() -> None:
    secret = generate_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    assert generate_secret() != secret


def test_signed_headers_verify_with_the_library_and_only_with_the_secret() -> None:
    secret = generate_secret()
    now = datetime.now(UTC)
    body = '{"type":"workflow.failing"}'
    headers = signed_headers(secret, msg_id="d-1", timestamp=now, body=body)
    assert headers["webhook-id"] == "d-1"
    assert headers["webhook-timestamp"] == str(int(now.timestamp()))
    assert headers["webhook-signature"].startswith("v1,")
    assert Webhook(secret).verify(body, headers) == {"type": "workflow.failing"}
    with pytest.raises(WebhookVerificationError):
        Webhook(generate_secret()).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body + " ", headers)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("https://hooks.example.com/x", None),
        ("http://10.0.0.1:8080/x?y=1", None),
        ("ftp://example.com/", "http:// or https://"),
        ("example.com/x", "http:// or https://"),
        ("https:///x", "host"),
        ("https://u:p@example.com/", "credentials"),
        ("https://u@example.com/", "credentials"),
        ("https://example.com:0/", "port"),
        ("https://example.com:99999/", "valid URL"),
        ("https://example.com/a b", "spaces"),
        ("https://example.com/\x00", "control"),
        ("https://example.com/#frag", "fragment"),
        ("https://example.com/" + "a" * 2100, "2048"),
    ],
)
def test_url_rules(url: str, problem: str | None) -> None:
    found = url_problem(url)
    assert (found is None) if problem is None else (found is not None and problem in found)


def test_backoff_is_exponential_capped_and_fully_jittered() -> None:
    highest = [backoff_s(POLICY, n, lambda low, high: high) for n in range(1, 6)]
    assert highest == [5, 10, 20, 30, 30]
    assert [backoff_s(POLICY, n, lambda low, high: low) for n in range(1, 6)] == [0] * 5
    spread = {round(backoff_s(POLICY, 3), 6) for _ in range(50)}
    assert len(spread) > 40 and all(0 <= s <= 20 for s in spread)
    assert backoff_s(POLICY, 10_000, lambda low, high: high) == 30  # no overflow


def test_a_2xx_delivers() -> None:
    for code in (200, 204, 299):
        decision = decide_attempt(POLICY, attempt=1, status_code=code, now=NOW)
        assert decision.status is DeliveryStatus.DELIVERED and decision.next_attempt_at is None


@pytest.mark.parametrize("code", [None, 199, 301, 400, 429, 500, 503])
def test_anything_else_is_retried_after_the_backoff(code: int | None) -> None:
    decision = decide_attempt(
        POLICY, attempt=2, status_code=code, now=NOW, uniform=lambda low, high: high
    )
    assert decision.status is DeliveryStatus.PENDING
    assert decision.next_attempt_at == NOW + timedelta(seconds=10)


def test_the_last_attempt_fails_the_delivery() -> None:
    decision = decide_attempt(POLICY, attempt=4, status_code=500, now=NOW)
    assert decision.status is DeliveryStatus.FAILED and decision.next_attempt_at is None
    assert decide_attempt(POLICY, attempt=4, status_code=200, now=NOW).status is (
        DeliveryStatus.DELIVERED
    )


def test_a_refused_address_is_not_told_to_the_user() -> None:
    """The egress guard's reason names what the host resolved to; the recorded error does not."""

    def internal(host: str, port: int, /) -> list[tuple[Any, Any, Any, Any, Any]]:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.1.2.3", port))]

    result = post(
        EgressPolicy(),
        "https://build.corp.example/hook",
        body="{}",
        headers={},
        timeout_s=1,
        ssl_context=ssl.create_default_context(),
        resolver=internal,
    )
    assert result.status_code is None and result.error == EGRESS_REFUSED_ERROR
    assert "10.1.2.3" not in result.error and "resolves" not in result.error
