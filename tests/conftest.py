"""Fixtures shared by every tier.

Infrastructure comes from `make services`, which writes the connection settings to .run/env; the
process environment overrides that file. A missing service fails the run under CI=true and skips
the test elsewhere, with the reason.
"""

from __future__ import annotations

import os
import sys
import urllib.parse
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import docker
import psycopg
import pytest
import redis
from dotenv import dotenv_values
from psycopg import sql

from chronoverse.errors import ChronoverseError
from chronoverse.kafka.admin import delete_topics, ensure_topics, list_topics
from chronoverse.migrate import migrate
from chronoverse.settings import KafkaSettings

ROOT = Path(__file__).resolve().parent.parent
RUN_DIR = Path(os.environ.get("CHRONOVERSE_RUN_DIR", ROOT / ".run"))
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _environ() -> dict[str, str]:
    env_file = RUN_DIR / "env"
    values = (
        {k: v for k, v in dotenv_values(env_file).items() if v is not None}
        if env_file.exists()
        else {}
    )
    return {**values, **os.environ}


ENVIRON = _environ()


def unavailable(what: str, exc: BaseException) -> None:
    message = f"{what} is not available ({exc}); run `make services`"
    if IN_CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def environ() -> Mapping[str, str]:
    """The CHRONOVERSE_* settings the tests and the service processes they start use."""
    return ENVIRON


# --- Postgres: one database per test, cloned from a migrated template ---------------------------


@pytest.fixture(scope="session")
def admin_database_url(environ: Mapping[str, str]) -> str:
    url = environ.get("CHRONOVERSE_DATABASE_URL", "")
    try:
        with psycopg.connect(url, connect_timeout=3):
            pass
    except psycopg.Error as exc:
        unavailable("Postgres", exc)
    return url


def _url_for(base_url: str, dbname: str) -> str:
    """The same server and credentials, another database (as a URL: it survives shell quoting)."""
    parts = urllib.parse.urlsplit(base_url)
    return urllib.parse.urlunsplit(parts._replace(path=f"/{dbname}"))


def _drop_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture(scope="session")
def empty_database_factory(admin_database_url: str) -> Iterator[Callable[..., str]]:
    """Create fresh databases (optionally from a template); all are dropped at session end."""
    created: list[str] = []

    def create(template: str | None = None) -> str:
        name = f"cv_test_{uuid.uuid4().hex[:12]}"
        query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            query = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template)
            )
        with psycopg.connect(admin_database_url, autocommit=True) as conn:
            conn.execute(query)
        created.append(name)
        return _url_for(admin_database_url, name)

    yield create
    for name in created:
        _drop_database(admin_database_url, name)


@pytest.fixture(scope="session")
def migrated_template(admin_database_url: str, empty_database_factory: Callable[..., str]) -> str:
    url = empty_database_factory()
    migrate(url)
    return urllib.parse.urlsplit(url).path.lstrip("/")


@pytest.fixture
def database_url(empty_database_factory: Callable[..., str], migrated_template: str) -> str:
    """A migrated database of this test's own."""
    return empty_database_factory(template=migrated_template)


# --- Kafka: topics of the test's own ------------------------------------------------------------


@pytest.fixture(scope="session")
def kafka_settings(environ: Mapping[str, str]) -> KafkaSettings:
    settings = KafkaSettings.from_environ(environ)
    try:
        list_topics(settings, timeout_s=5)
    except ChronoverseError as exc:
        unavailable("the Kafka broker", exc)
    return settings


@pytest.fixture
def topic_factory(kafka_settings: KafkaSettings) -> Iterator[Callable[..., str]]:
    created: list[str] = []

    def create(partitions: int = 1) -> str:
        name = f"test-{uuid.uuid4().hex[:10]}"
        ensure_topics(kafka_settings, [name], partitions=partitions)
        created.append(name)
        return name

    yield create
    if created:
        delete_topics(kafka_settings, created)


# --- Redis and Docker ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_client(environ: Mapping[str, str]) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(environ.get("CHRONOVERSE_REDIS_URL", "redis://127.0.0.1:6379/0"))
    try:
        client.ping()
    except redis.RedisError as exc:
        unavailable("Redis", exc)
    yield client
    client.close()


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    try:
        client = docker.from_env(timeout=30)
        client.ping()
    except docker.errors.DockerException as exc:
        unavailable("the Docker engine", exc)
    yield client
    client.close()


def wait_until(
    predicate: Callable[[], Any],
    *,
    timeout_s: float = 30.0,
    interval_s: float = 0.05,
    message: str = "condition",
) -> Any:
    """Poll until ``predicate()`` is truthy; return its value or fail with ``message``."""
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s}s waiting for {message}")
        time.sleep(interval_s)


# --- ending the process ------------------------------------------------------------------------
# A librdkafka client that a test leaves unclosed makes the interpreter's exit wait on its native
# threads for ever when its broker is gone (seen at the end of the main tiers: `rdk:main` and a
# `rdk:broker` thread alive after pytest's summary). Until the leaking test is found, the process
# ends itself once pytest has reported everything, with pytest's own exit status.
_EXIT_STATUS: list[int] = []


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _EXIT_STATUS.append(int(exitstatus))


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    if _EXIT_STATUS and os.environ.get("CHRONOVERSE_PYTEST_NO_FORCED_EXIT") != "1":
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_EXIT_STATUS[-1])
