"""Signed webhooks, the pure parts: events, secrets, URL rules, signing and the retry decision.

Signing follows the Standard Webhooks spec through its reference library (``standardwebhooks``):
the signed content is ``<webhook-id>.<webhook-timestamp>.<body>``, HMAC-SHA256 with the endpoint's
``whsec_`` secret. The ``webhook-id`` is the delivery's id, the same on every retry, so a receiver
can de-duplicate. The server stores endpoints and reads their deliveries; the execution worker's
delivery loop (services/execution_worker/webhooks.py) sends them, deciding with
:func:`decide_attempt` what an attempt's outcome means.
"""

from __future__ import annotations

import base64
import enum
import random
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from standardwebhooks.webhooks import Webhook

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
MAX_URL_CHARS = 2048
USER_AGENT = "chronoverse-webhooks/1"
# What a user is told when the egress guard refuses an attempt: the guard's own reason can say
# what a host name resolved to, which would let a user map internal names (the worker logs it).
EGRESS_REFUSED_ERROR = (
    "blocked by the egress policy: the address is not allowed; no request was sent"
)


class WebhookEvent(enum.StrEnum):
    """What an endpoint subscribes to: state flips, never every run."""

    WORKFLOW_FAILING = "workflow.failing"
    WORKFLOW_RECOVERED = "workflow.recovered"
    WORKFLOW_TERMINATED = "workflow.terminated"
    BUILD_FAILED = "build.failed"


class DeliveryStatus(enum.StrEnum):
    PENDING = "PENDING"
    DELIVERED = "DELIVERED"
    FAILED = "FAILED"


def generate_secret() -> str:
    """A new signing secret, ``whsec_`` and 32 random bytes in base64 (the spec's form)."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def url_problem(url: str) -> str | None:
    """Why ``url`` cannot be a webhook endpoint, or None. Addresses are judged separately, by the
    egress guard (chronoverse.egress), at creation for IP literals and at every attempt."""
    if len(url) > MAX_URL_CHARS:
        return f"must be at most {MAX_URL_CHARS} characters"
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in url):
        return "must not contain spaces or control characters"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "is not a valid URL"
    if parts.scheme.lower() not in {"http", "https"}:
        return "must be an http:// or https:// URL"
    if not parts.hostname:
        return "must name a host"
    if parts.username is not None or parts.password is not None:
        return "must not carry credentials (user:password@)"
    if port == 0:
        return "must have a port from 1 to 65535"
    if parts.fragment:
        return "must not have a #fragment"
    return None


def signed_headers(secret: str, *, msg_id: str, timestamp: datetime, body: str) -> dict[str, str]:
    """The Standard Webhooks headers for ``body`` sent as message ``msg_id`` at ``timestamp``."""
    signature = Webhook(secret).sign(msg_id, timestamp, body)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": signature,
    }


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """How often and how patiently a delivery is retried."""

    max_attempts: int = 8
    base_delay_s: float = 5.0
    max_delay_s: float = 3600.0


def backoff_s(
    policy: RetryPolicy, attempt: int, uniform: Callable[[float, float], float] = random.uniform
) -> float:
    """Seconds to wait after failed ``attempt`` (1-based): exponential backoff with full jitter,
    uniform between 0 and ``min(max_delay_s, base_delay_s * 2 ** (attempt - 1))``, so receivers
    that failed together are not all retried at the same instant."""
    ceiling = min(policy.max_delay_s, policy.base_delay_s * 2.0 ** min(attempt - 1, 62))
    return uniform(0.0, ceiling)


def is_success(status_code: int | None) -> bool:
    return status_code is not None and 200 <= status_code < 300


@dataclass(frozen=True, kw_only=True)
class AttemptDecision:
    """What one attempt's outcome means for its delivery."""

    status: DeliveryStatus
    next_attempt_at: datetime | None  # when PENDING: the next attempt


def decide_attempt(
    policy: RetryPolicy,
    *,
    attempt: int,
    status_code: int | None,
    now: datetime,
    uniform: Callable[[float, float], float] = random.uniform,
) -> AttemptDecision:
    """A 2xx delivers; anything else (another status, no answer, a refused address) is retried
    after :func:`backoff_s` until ``max_attempts`` attempts were made, then FAILED."""
    if is_success(status_code):
        return AttemptDecision(status=DeliveryStatus.DELIVERED, next_attempt_at=None)
    if attempt >= policy.max_attempts:
        return AttemptDecision(status=DeliveryStatus.FAILED, next_attempt_at=None)
    delay = backoff_s(policy, attempt, uniform)
    return AttemptDecision(
        status=DeliveryStatus.PENDING, next_attempt_at=now + timedelta(seconds=delay)
    )
