"""Redis connections: one client per process, from the Redis settings, with timeouts."""

from __future__ import annotations

import redis

from chronoverse.settings import RedisSettings


def connect(settings: RedisSettings, *, timeout_s: float = 5.0) -> redis.Redis:
    return redis.Redis.from_url(
        settings.redis_url,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        health_check_interval=30,
    )


def ping(client: redis.Redis) -> None:
    client.ping()
