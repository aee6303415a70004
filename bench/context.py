"""What every scenario gets: options, the infrastructure, and the shared full stack."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from bench.database import connect, create_user
from bench.environment import BenchError, Infrastructure
from bench.measure import rss_now
from bench.stack import Service, Stack
from chronoverse.postgres import Conn

# Each worker's idle RSS is read after this long at rest: imports done, pools and consumers settled.
SETTLE_S = 5.0
# tansu holds a fetch for its whole wait even when messages arrive (Apache Kafka answers at once):
# a short wait keeps the broker from adding its latency.
FETCH_WAIT_MAX_MS = "20"


@dataclass(frozen=True, kw_only=True)
class Options:
    repeats: int | None  # None: each scenario's own default
    scale: float
    execution_workers: int
    concurrency: int
    run_dir: Path  # service logs of this run


@dataclass(kw_only=True)
class FullStack:
    """All five services (and extra execution workers) on a database and topics of their own."""

    stack: Stack
    database_url: str
    conn: Conn
    user_id: uuid.UUID
    idle_rss: dict[str, float]


class BenchContext:
    def __init__(self, infra: Infrastructure, options: Options) -> None:
        self.infra = infra
        self.options = options
        self.load_rss: dict[str, float] = {}
        self._full: FullStack | None = None

    def repeats(self, default: int) -> int:
        return self.options.repeats or default

    def scaled(self, count: int) -> int:
        return max(1, round(count * self.options.scale))

    def progress(self, message: str) -> None:
        click.echo(f"[bench] {message}", err=True)

    def new_stack(self, name: str, *, overrides: dict[str, str] | None = None) -> tuple[Stack, str]:
        """A stack (not started) on a fresh database and fresh topics; and the database URL."""
        database_url = self.infra.create_database()
        stack = Stack(
            self.infra.environ,
            database_url,
            self.options.run_dir / name,
            label="bench",
            CHRONOVERSE_LOG_LEVEL="INFO",
            CHRONOVERSE_KAFKA_FETCH_WAIT_MAX_MS=FETCH_WAIT_MAX_MS,
            # The containers scenario runs on `bridge`, as `docker run` does (`none` stays the
            # default).
            CHRONOVERSE_CONTAINER_NETWORKS="none,bridge",
            **(overrides or {}),
        )
        self.infra.create_topics(stack.topic_prefix)
        return stack, database_url

    def full_stack_config(self) -> dict[str, Any]:
        return {
            "services": "server, scheduling-worker, workflow-worker, log-processor: 1 process each",
            "execution_workers": self.options.execution_workers,
            "execution_worker_concurrency": self.options.concurrency,
            "log_level": "INFO (JSON)",
            "kafka_fetch_wait_max_ms": int(FETCH_WAIT_MAX_MS),
            "other_settings": "defaults (docs/configuration.md)",
        }

    def full_stack(self) -> FullStack:
        """Started on first use and shared by the scenarios that need the whole system."""
        if self._full is None:
            self._full = self.start_full_stack(
                "full-stack", execution_workers=self.options.execution_workers
            )
        return self._full

    def start_full_stack(
        self, name: str, *, execution_workers: int, scheduling_workers: int = 1
    ) -> FullStack:
        """A full stack of its own (the caller stops it), settled and with a user."""
        stack, database_url = self.new_stack(name)
        services = [
            Service(name="server", service="server"),
            Service(name="scheduling-worker", service="scheduling-worker"),
            Service(name="workflow-worker", service="workflow-worker"),
            Service(name="log-processor", service="log-processor"),
        ]
        services += [
            Service(name=f"scheduling-worker-{i + 1}", service="scheduling-worker")
            for i in range(1, scheduling_workers)
        ]
        services += [
            Service(
                name=f"execution-worker-{i + 1}",
                service="execution-worker",
                env={"CHRONOVERSE_CONCURRENCY": str(self.options.concurrency)},
            )
            for i in range(execution_workers)
        ]
        self.progress(f"starting {name} ({len(services)} processes, logs in {stack.log_dir})")
        try:
            stack.start_all(services)
        except BenchError:
            stack.stop_all()
            raise
        conn = connect(database_url)
        user_id = create_user(conn)
        self.progress(f"letting it settle for {SETTLE_S:.0f}s before reading idle memory")
        time.sleep(SETTLE_S)
        return FullStack(
            stack=stack,
            database_url=database_url,
            conn=conn,
            user_id=user_id,
            idle_rss=rss_now(stack.pids()),
        )

    def close(self) -> None:
        if self._full is not None:
            self._full.conn.close()
            self._full.stack.stop_all()
            self._full = None
        self.infra.cleanup()
