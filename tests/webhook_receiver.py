"""A webhook receiver for the tests: a local HTTP server on 127.0.0.1 that verifies every request
with the Standard Webhooks library's own verifier, and answers as a script says."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import (
    EmptyWebhookSecretError,
    Webhook,
    WebhookVerificationError,
)


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    verified: Any  # the payload the verifier returned, or None when verification failed
    error: str | None = None


@dataclass
class Receiver:
    """Answers each request with the next of ``script`` (a status, or "hang": no answer for
    ``hang_s``), then with ``then``."""

    secret: str = ""
    script: list[int | str] = field(default_factory=list)
    then: int = 200
    hang_s: float = 30.0
    received: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._release = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                with outer._lock:
                    try:
                        verified = Webhook(outer.secret).verify(body, headers)
                        error = None
                    except (WebhookVerificationError, EmptyWebhookSecretError) as exc:
                        verified, error = None, f"{type(exc).__name__}: {exc}"
                    outer.received.append(Received(headers, body, verified, error))
                    answer = outer.script.pop(0) if outer.script else outer.then
                if answer == "hang":
                    outer._release.wait(outer.hang_s)
                    return
                self.send_response(int(answer))
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hooks/chronoverse"

    @contextmanager
    def serving(self) -> Iterator[Receiver]:
        thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._release.set()
            self._server.shutdown()
            self._server.server_close()

    def verified(self) -> list[Any]:
        """The payloads that passed verification, in arrival order."""
        with self._lock:
            return [r.verified for r in self.received if r.error is None]

    def count(self) -> int:
        with self._lock:
            return len(self.received)

    def wait_for(self, n: int, timeout_s: float = 20.0) -> None:
        deadline = time.monotonic() + timeout_s
        while self.count() < n:
            if time.monotonic() > deadline:
                raise AssertionError(f"the receiver got {self.count()} requests, not {n}")
            time.sleep(0.02)
