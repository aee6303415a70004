"""Where the bench runs: the infrastructure `make services` started, its own databases and topics,
and a description of the machine for the report."""

from __future__ import annotations

import os
import platform
import subprocess
import urllib.parse
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import docker
import psycopg
import redis
from dotenv import dotenv_values
from psycopg import sql

from chronoverse.errors import ChronoverseError
from chronoverse.kafka.admin import delete_topics, ensure_topics, list_topics
from chronoverse.migrate import migrate
from chronoverse.settings import KafkaSettings

ROOT = Path(__file__).resolve().parent.parent


class BenchError(ChronoverseError):
    """The bench cannot run, or a scenario did not reach its end state."""


def read_environ(run_dir: Path, environ: Mapping[str, str]) -> dict[str, str]:
    """`.run/env` (written by `make services`), overridden by the process environment."""
    env_file = run_dir / "env"
    values = dotenv_values(env_file) if env_file.exists() else {}
    return {**{k: v for k, v in values.items() if v is not None}, **environ}


def database_url_for(base_url: str, dbname: str) -> str:
    """The same server and credentials, another database."""
    parts = urllib.parse.urlsplit(base_url)
    return urllib.parse.urlunsplit(parts._replace(path=f"/{dbname}"))


@dataclass(kw_only=True)
class Infrastructure:
    """Postgres, Redis, the broker and Docker as configured for this checkout."""

    environ: dict[str, str]
    database_url: str
    redis_url: str
    _databases: list[str] = field(default_factory=list)
    _template: str | None = None
    _topics: list[str] = field(default_factory=list)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Infrastructure:
        run_dir = Path(environ.get("CHRONOVERSE_RUN_DIR", ROOT / ".run"))
        env = read_environ(run_dir, environ)
        return cls(
            environ=env,
            database_url=env.get(
                "CHRONOVERSE_DATABASE_URL",
                "postgresql://chronoverse:chronoverse@127.0.0.1:5432/chronoverse",
            ),
            redis_url=env.get("CHRONOVERSE_REDIS_URL", "redis://127.0.0.1:6379/0"),
        )

    def check(self) -> None:
        """Fail early, naming what is missing, when a piece of infrastructure does not answer."""
        hint = "; run `make services`"
        try:
            with psycopg.connect(self.database_url, connect_timeout=3):
                pass
        except psycopg.Error as exc:
            raise BenchError(f"Postgres is not available ({exc}){hint}") from exc
        try:
            redis.Redis.from_url(self.redis_url, socket_connect_timeout=3).ping()
        except redis.RedisError as exc:
            raise BenchError(f"Redis is not available ({exc}){hint}") from exc
        try:
            list_topics(KafkaSettings.from_environ(self.environ), timeout_s=5)
        except ChronoverseError as exc:
            raise BenchError(f"the Kafka broker is not available ({exc}){hint}") from exc
        try:
            client = docker.from_env(timeout=10)
            client.ping()
            client.close()
        except docker.errors.DockerException as exc:
            raise BenchError(f"the Docker engine is not available ({exc}){hint}") from exc

    # --- databases ------------------------------------------------------------------------------

    def create_database(self) -> str:
        """A fresh migrated database of the bench's own (cloned from a template); its URL."""
        if self._template is None:
            self._template = self._create(None)
            migrate(database_url_for(self.database_url, self._template))
        return database_url_for(self.database_url, self._create(self._template))

    def _create(self, template: str | None) -> str:
        name = f"cv_bench_{uuid.uuid4().hex[:12]}"
        query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template is not None:
            query = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template)
            )
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            conn.execute(query)
        self._databases.append(name)
        return name

    # --- topics ---------------------------------------------------------------------------------

    def create_topics(self, prefix: str) -> KafkaSettings:
        """Chronoverse's topics under ``prefix``; deleted by :meth:`cleanup`."""
        settings = KafkaSettings.from_environ(
            {**self.environ, "CHRONOVERSE_KAFKA_TOPIC_PREFIX": prefix}
        )
        ensure_topics(settings, settings.all_topics())
        self._topics += settings.all_topics()
        return settings

    def cleanup(self) -> None:
        """Drop every database and delete every topic the bench created."""
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            for name in reversed(self._databases):
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )
        self._databases.clear()
        if self._topics:
            delete_topics(KafkaSettings.from_environ(self.environ), self._topics)
            self._topics.clear()


def describe_machine(infra: Infrastructure) -> dict[str, Any]:
    """What the numbers were measured on."""
    cpuinfo = _read("/proc/cpuinfo")
    models = [line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")]
    meminfo = {
        line.split(":")[0]: line.split(":")[1].strip()
        for line in _read("/proc/meminfo")
        if ":" in line
    }
    with psycopg.connect(infra.database_url) as conn:
        row = conn.execute("SELECT current_setting('server_version')").fetchone()
    redis_info = cast(dict[str, Any], redis.Redis.from_url(infra.redis_url).info("server"))
    return {
        "cpus": os.cpu_count(),
        "cpu_model": models[0] if models else platform.processor(),
        "memory": meminfo.get("MemTotal", "?"),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "postgres": row[0] if row else "?",
        "redis": redis_info.get("redis_version", "?"),
        "docker": _command(["docker", "version", "--format", "{{.Server.Version}}"]),
        "broker": "tansu (Kafka protocol, memory storage), as started by `make services`",
    }


def _read(path: str) -> list[str]:
    try:
        return Path(path).read_text().splitlines()
    except OSError:
        return []


def _command(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"
