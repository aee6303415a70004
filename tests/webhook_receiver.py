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
    at: float = field(default_factory=time.monotonic)  # when it arrived


@dataclass
class Receiver:
    """Answers each request with the next of ``script`` (a status; "hang": no answer for
    ``hang_s``; "trickle": a 200 whose status line and headers come one byte every
    ``trickle_s``, for as long as ``hang_s`` allows), then with ``then``. ``most_at_once`` is the
    most requests it was answering at the same time."""

    secret: str = ""
    script: list[int | str] = field(default_factory=list)
    then: int = 200
    hang_s: float = 30.0
    trickle_s: float = 0.2
    most_at_once: int = 0
    received: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._at_once = 0
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
                    outer._at_once += 1
                    outer.most_at_once = max(outer.most_at_once, outer._at_once)
                try:
                    self.answer(answer)
                finally:
                    with outer._lock:
                        outer._at_once -= 1

            def answer(self, answer: int | str) -> None:
                if answer == "hang":
                    outer._release.wait(outer.hang_s)
                    return
                if answer == "trickle":
                    # Every byte comes well within a read timeout; the whole never does.
                    head = b"HTTP/1.1 200 OK\r\n" + b"X-Slow: " + b"." * 10_000 + b"\r\n\r\n"
                    deadline = time.monotonic() + outer.hang_s
                    for byte in head:
                        if outer._release.wait(outer.trickle_s) or time.monotonic() > deadline:
                            return
                        try:
                            self.wfile.write(bytes([byte]))
                            self.wfile.flush()
                        except OSError:
                            return  # the sender gave up
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
