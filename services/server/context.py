"""What the application layer runs on: settings, the pool, Redis, accounts, secrets, rules."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import psycopg

from chronoverse import redis_store
from chronoverse.accounts import Accounts
from chronoverse.postgres import Pool, create_pool
from chronoverse.secrets import SecretBox
from services.server.follow import StateCache
from services.server.live import LiveHub, StreamSlots
from services.server.run_limits import RunThrottle
from services.server.settings import Settings
from services.server.store.workflows import PayloadRules
from services.server.throttle import AuthRates, AuthThrottle, parse_rate


class ServerContext:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # Opened by open(): building the app (e.g. to render OpenAPI) needs no database.
        self.pool: Pool = create_pool(settings, name="server", open=False)
        self.accounts = Accounts(
            self.pool,
            token_ttl=timedelta(days=settings.token_ttl_days),
            hash_slots=settings.password_hash_concurrency,
            hash_wait_s=settings.password_hash_wait_s,
        )
        # Login and registration attempts, counted in Redis for every server process.
        self.throttle = AuthThrottle(
            settings.redis_url,
            AuthRates(
                per_ip=parse_rate(settings.auth_rate_limit_per_ip),
                per_email=parse_rate(settings.auth_rate_limit_per_email),
            ),
            key_prefix="chronoverse:auth-limits",
        )
        # Manual runs per user and minute, counted in Redis like the auth attempts.
        self.run_throttle = RunThrottle(
            settings.redis_url,
            per_minute=settings.manual_runs_per_minute,
            key_prefix="chronoverse:run-limits",
        )
        # Seals the secret values of the payloads the API stores; responses only ever mask them.
        self.secrets = SecretBox.from_settings(settings)
        # The operator's bounds on payloads: container policy, egress policy, volumes per user.
        self.rules = PayloadRules.from_settings(settings)
        # Connections are made on first use.
        self.redis = redis_store.connect(settings)
        # Live log viewers: one Redis subscription per process (its thread starts with the first
        # viewer), a few threads that read Postgres for them, the job states they share, and
        # each user's cap on open streams.
        self.live = LiveHub(redis_store.connect(settings))
        self.log_reads = ThreadPoolExecutor(
            max_workers=settings.log_stream_threads, thread_name_prefix="log-reads"
        )
        self.log_states = StateCache()
        self.stream_slots = StreamSlots(self.redis, cap=settings.max_streams_per_user)

    def open(self) -> None:
        self.pool.open(wait=False)

    def close(self) -> None:
        self.live.stop()
        self.log_reads.shutdown(wait=False, cancel_futures=True)
        self.pool.close()
        self.redis.close()

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Connection[dict[str, Any]]]:
        """A pooled connection; commits when the block ends normally, rolls back otherwise."""
        with self.pool.connection() as conn:
            yield conn
