"""The /healthz, /readyz and /metrics listener of the workers.

Liveness says the process's main loop is running. Readiness runs each dependency probe (Postgres,
Kafka, Redis, Docker) with its own timeout and answers 503 naming the ones that failed.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

logger = logging.getLogger(__name__)
# How long one readiness probe may wait for its dependency.
PROBE_TIMEOUT_S = 2.0


@dataclass(frozen=True, kw_only=True)
class Check:
    """A named readiness probe; it raises when the dependency is not usable."""

    name: str
    probe: Callable[[], None]


def run_checks(checks: Sequence[Check]) -> tuple[bool, dict[str, str]]:
    results: dict[str, str] = {}
    for check in checks:
        try:
            check.probe()
            results[check.name] = "ok"
        except Exception as exc:
            results[check.name] = f"error: {exc}"
    return all(r == "ok" for r in results.values()), results


class HealthServer:
    def __init__(
        self, host: str, port: int, *, checks: Sequence[Check], live: Callable[[], bool]
    ) -> None:
        self._checks = checks
        self._live = live
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="health-server", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/healthz":
                    live = outer._live()
                    self._json(
                        HTTPStatus.OK if live else HTTPStatus.SERVICE_UNAVAILABLE,
                        {"status": "ok" if live else "stopping"},
                    )
                elif path == "/readyz":
                    ready, results = run_checks(outer._checks)
                    ready = ready and outer._live()
                    self._json(
                        HTTPStatus.OK if ready else HTTPStatus.SERVICE_UNAVAILABLE,
                        {"status": "ready" if ready else "not_ready", "checks": results},
                    )
                elif path == "/metrics":
                    self._send(HTTPStatus.OK, CONTENT_TYPE_LATEST, generate_latest())
                else:
                    self._json(
                        HTTPStatus.NOT_FOUND,
                        {
                            "error": {
                                "code": "not_found",
                                "message": f"no route {path}",
                                "details": [],
                            }
                        },
                    )

            def _json(self, status: HTTPStatus, body: Any) -> None:
                self._send(status, "application/json", json.dumps(body).encode())

            def _send(self, status: HTTPStatus, content_type: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                logger.debug("health %s", format % args)

        return Handler
