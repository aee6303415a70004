"""Rows and servers the scheduling and execution tests need, made directly and plainly."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import psycopg


def make_user(conn: psycopg.Connection[Any]) -> uuid.UUID:
    row = conn.execute(
        "INSERT INTO users (email, password_hash) VALUES (%s, 'x') RETURNING id",
        (f"{uuid.uuid4().hex[:12]}@example.com",),
    ).fetchone()
    assert row is not None
    return row[0] if isinstance(row, tuple) else row["id"]


def make_workflow(
    conn: psycopg.Connection[Any],
    user_id: uuid.UUID,
    *,
    kind: str = "HEARTBEAT",
    payload: dict[str, Any] | None = None,
    interval: int = 1,
    build_status: str = "COMPLETED",
    next_run_at: datetime | str = "now()",
    max_failures: int = 3,
) -> uuid.UUID:
    row = conn.execute(
        "INSERT INTO workflows (user_id, name, kind, payload, interval_minutes, build_status, "
        "max_consecutive_job_failures_allowed, next_run_at) "
        "VALUES (%s, 'w', %s, %s, %s, %s, %s, "
        "CASE WHEN %s = 'now()' THEN now() ELSE %s::timestamptz END) RETURNING id",
        (
            user_id,
            kind,
            json.dumps(payload or {}),
            interval,
            build_status,
            max_failures,
            str(next_run_at),
            str(next_run_at) if next_run_at != "now()" else None,
        ),
    ).fetchone()
    assert row is not None
    return row[0] if isinstance(row, tuple) else row["id"]


class Endpoint:
    """A local HTTP endpoint with a settable status and delay, counting its requests."""

    def __init__(self) -> None:
        self.status = 200
        self.delay_s = 0.0
        self.hits = 0
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with outer._lock:
                    outer.hits += 1
                time.sleep(outer.delay_s)
                self.send_response(outer.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_HEAD = do_GET

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/health"

    @contextmanager
    def serving(self) -> Iterator[Endpoint]:
        thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()
