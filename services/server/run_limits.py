"""The per-user rate of manual runs, counted in Redis and shared by every server process.

The same `limits` sliding-window counter as the login throttle (services/server/throttle.py).
Only runs that are started count: the use case hits the counter after the job row is written,
in the run's transaction, so a refused, invalid or replayed request (an Idempotency-Key seen
before) does not. When Redis cannot be reached, runs are let through and the failure is logged;
the active-jobs quota (Postgres) still bounds them.
"""

from __future__ import annotations

import logging
from uuid import UUID

import redis
from limits import RateLimitItemPerMinute

from chronoverse.errors import RateLimitedError
from services.server.throttle import redis_limiter, retry_after_s

logger = logging.getLogger(__name__)


class RunThrottle:
    """Counts a user's manual runs; raises RateLimitedError past ``per_minute``."""

    def __init__(self, redis_url: str, *, per_minute: int, key_prefix: str) -> None:
        self._rate = RateLimitItemPerMinute(per_minute)
        # Short timeouts (redis_limiter): the hit happens in the run's transaction (under the
        # workflow's row lock), so an unreachable Redis must fail fast, and then let the run
        # through.
        self._limiter = redis_limiter(redis_url, key_prefix=key_prefix)

    def hit(self, user_id: UUID) -> None:
        """Count one manual run of the user; RateLimitedError (not counted) past the rate."""
        try:
            if self._limiter.hit(self._rate, "manual-run", str(user_id)):
                return
            retry_after = retry_after_s(self._limiter, self._rate, "manual-run", str(user_id))
        except redis.RedisError as exc:
            logger.warning(
                "manual-run rate limit unavailable (Redis: %s); run let through",
                exc,
                extra={"action": "run_throttle_unavailable"},
            )
            return
        raise RateLimitedError(
            f"too many manual runs: at most {self._rate.amount} a minute per user "
            f"(CHRONOVERSE_MANUAL_RUNS_PER_MINUTE); try again in {retry_after} s",
            retry_after_s=retry_after,
        )
