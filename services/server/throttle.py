"""Rate limits on login and registration, per client address and per email, kept in Redis.

Counters live in Redis so that every server process shares them. The `limits` library does the
counting (a sliding-window counter: two keys per identity, no per-hit list); this module only
names what is counted. Emails are hashed before they become a key, so Redis holds no address.

When Redis cannot be reached, attempts are let through and the failure is logged: an outage of
the cache must not lock every user out, and each attempt still costs a bounded Argon2 slot
(:class:`chronoverse.accounts.Accounts`).
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import math
import time
from dataclasses import dataclass
from typing import Literal

import redis
from limits import RateLimitItem, parse
from limits.storage import RedisStorage
from limits.strategies import SlidingWindowCounterRateLimiter

from chronoverse.errors import RateLimitedError

logger = logging.getLogger(__name__)

Action = Literal["login", "register"]
# How long a counter's Redis call may take before the attempt is let through: a Redis that does
# not answer must not hold request threads (redis-py's own default is to wait for ever).
LIMITER_TIMEOUT_S = 0.5


def parse_rate(text: str) -> RateLimitItem:
    """A rate such as ``10/minute`` or ``100 per hour``; ValueError when it is not one."""
    try:
        return parse(text)
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a rate such as '10/minute' or '100 per hour'") from exc


def redis_limiter(redis_url: str, *, key_prefix: str) -> SlidingWindowCounterRateLimiter:
    """A `limits` sliding-window counter in Redis, with short timeouts (every limiter of the
    server: login, registration, manual runs)."""
    storage = RedisStorage(
        redis_url,
        key_prefix=key_prefix,
        socket_timeout=LIMITER_TIMEOUT_S,
        socket_connect_timeout=LIMITER_TIMEOUT_S,
    )
    return SlidingWindowCounterRateLimiter(storage)


def retry_after_s(
    limiter: SlidingWindowCounterRateLimiter, rate: RateLimitItem, *identifiers: str
) -> int:
    """Whole seconds until ``identifiers`` may try again under ``rate`` (at least 1)."""
    stats = limiter.get_window_stats(rate, *identifiers)
    return max(1, math.ceil(stats.reset_time - time.time()))


@dataclass(frozen=True, kw_only=True)
class AuthRates:
    per_ip: RateLimitItem
    per_email: RateLimitItem


class AuthThrottle:
    """Counts login and registration attempts; raises RateLimitedError past a limit."""

    def __init__(self, redis_url: str, rates: AuthRates, *, key_prefix: str) -> None:
        self._rates = rates
        self._limiter = redis_limiter(redis_url, key_prefix=key_prefix)

    def attempt(self, action: Action, *, client: str | None, email: str) -> None:
        """Count one attempt of ``action``; raise RateLimitedError when the client's address or
        the email has used up its rate (the attempt is not counted then)."""
        checks = [("email", _email_key(email), self._rates.per_email)]
        if client:
            checks.insert(0, ("ip", client_key(client), self._rates.per_ip))
        try:
            for scope, identity, rate in checks:
                if not self._limiter.test(rate, action, scope, identity):
                    raise self._limited(action, scope, identity, rate)
            for scope, identity, rate in checks:
                if not self._limiter.hit(rate, action, scope, identity):
                    raise self._limited(action, scope, identity, rate)
        except redis.RedisError as exc:
            logger.warning(
                "auth rate limits unavailable (Redis: %s); attempt let through",
                exc,
                extra={"action": "auth_throttle_unavailable"},
            )

    def _limited(
        self, action: Action, scope: str, identity: str, rate: RateLimitItem
    ) -> RateLimitedError:
        retry_after = retry_after_s(self._limiter, rate, action, scope, identity)
        what = "this address" if scope == "ip" else "this account"
        return RateLimitedError(
            f"too many {action} attempts from {what} (limit {rate}); try again in {retry_after} s",
            retry_after_s=retry_after,
        )


def client_key(address: str) -> str:
    """What an address is counted as: itself for IPv4, its /64 for IPv6 (one host usually holds a
    whole /64, so counting single addresses would give it 2^64 budgets)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address  # not an address (e.g. a test client's name): counted as it is
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def _email_key(email: str) -> str:
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]
