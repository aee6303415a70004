"""Readiness probes for each kind of dependency, built from settings.

Docker's probe lives with the Docker adapter (:func:`chronoverse.containers.docker_check`), so that
services without containers never import the Docker SDK (about 10 MiB of resident memory).
"""

from __future__ import annotations

from chronoverse import postgres, redis_store
from chronoverse.health import PROBE_TIMEOUT_S, Check
from chronoverse.kafka.admin import list_topics
from chronoverse.kafka.assignment import AssignmentWatch
from chronoverse.settings import KafkaSettings, PostgresSettings, RedisSettings


def postgres_check(settings: PostgresSettings) -> Check:
    return Check(
        name="postgres",
        probe=lambda: postgres.ping(settings.database_url, timeout_s=PROBE_TIMEOUT_S),
    )


def kafka_check(settings: KafkaSettings, topics: tuple[str, ...] = ()) -> Check:
    def probe() -> None:
        present = list_topics(settings, timeout_s=PROBE_TIMEOUT_S)
        missing = sorted(set(topics) - present)
        if missing:
            raise RuntimeError(f"topics missing: {', '.join(missing)}")

    return Check(name="kafka", probe=probe)


def assignment_check(watch: AssignmentWatch) -> Check:
    """Not ready while the consumer has held no partition for too long (no I/O: the consumer loop
    keeps the watch current)."""

    def probe() -> None:
        problem = watch.problem()
        if problem is not None:
            raise RuntimeError(problem)

    return Check(name="kafka_assignment", probe=probe)


def redis_check(settings: RedisSettings) -> Check:
    return Check(
        name="redis",
        probe=lambda: redis_store.ping(redis_store.connect(settings, timeout_s=PROBE_TIMEOUT_S)),
    )
