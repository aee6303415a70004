"""The webhook delivery loop: sends the outbox (``webhook_deliveries``), records every attempt.

One dispatcher thread claims due deliveries (``FOR UPDATE SKIP LOCKED``, held until
``locked_until``), never more than there are free sender threads, and hands them to a bounded
pool of its own. The claim takes users in turn and never a second delivery of an endpoint that
has one in flight, so one user's slow endpoints cannot take every sender. Each attempt is signed
anew (Standard Webhooks, :mod:`chronoverse.webhooks`), passes the same egress guard as HEARTBEAT
endpoints and goes to the address that was checked (as services/execution_worker/heartbeat.py
does), on a connection of its own that a :class:`Watchdog` cuts at the attempt's deadline. The
loop has its own threads and database connections, so a receiver that hangs or errors can only
delay other deliveries, never a job. What an outcome means (delivered, retried when, failed) is
decided by :func:`chronoverse.webhooks.decide_attempt`.
"""

from __future__ import annotations

import json
import logging
import socket
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx

from chronoverse.domain import utcnow
from chronoverse.egress import EgressPolicy, Resolver, check_endpoint
from chronoverse.errors import EgressRefused, UnresolvableHostError
from chronoverse.postgres import Pool
from chronoverse.secrets import SecretBox, SecretError
from chronoverse.sql import Queries
from chronoverse.webhooks import (
    EGRESS_REFUSED_ERROR,
    USER_AGENT,
    AttemptDecision,
    RetryPolicy,
    decide_attempt,
    signed_headers,
)
from services.execution_worker import pinned

logger = logging.getLogger(__name__)

QUERIES = Queries.load(Path(__file__).with_name("queries.sql"))
MAX_ERROR_CHARS = 1000


@dataclass(frozen=True, kw_only=True)
class DueDelivery:
    """A delivery this loop took, as its ``attempt``-th attempt."""

    id: UUID
    event: str
    payload: dict[str, Any]
    attempt: int
    url: str
    sealed_secret: str

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> DueDelivery:
        return cls(
            id=row["id"],
            event=row["event"],
            payload=row["payload"],
            attempt=row["attempts"],
            url=row["url"],
            sealed_secret=row["secret"],
        )


@dataclass(frozen=True, kw_only=True)
class AttemptResult:
    """What the receiver answered, or why there was no answer (then ``status_code`` is None)."""

    status_code: int | None
    duration_ms: int
    error: str | None


class DeliveryStore:
    """The loop's queries, over a pool of its own."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    def claim(self, *, limit: int, lock_s: float, max_attempts: int) -> list[DueDelivery]:
        with self._pool.connection() as conn:
            conn.execute(QUERIES.fail_abandoned_webhook_deliveries, {"max_attempts": max_attempts})
            rows = conn.execute(
                QUERIES.claim_webhook_deliveries,
                {"limit": limit, "lock_s": lock_s, "max_attempts": max_attempts},
            ).fetchall()
        return [DueDelivery.from_row(row) for row in rows]

    def record(
        self, delivery: DueDelivery, result: AttemptResult, decision: AttemptDecision
    ) -> None:
        """The attempt's row and the delivery's new state, in one transaction."""
        with self._pool.connection() as conn:
            conn.execute(
                QUERIES.insert_webhook_attempt,
                {
                    "delivery_id": delivery.id,
                    "attempt": delivery.attempt,
                    "status_code": result.status_code,
                    "duration_ms": result.duration_ms,
                    "error": result.error,
                },
            )
            conn.execute(
                QUERIES.finish_webhook_attempt,
                {
                    "delivery_id": delivery.id,
                    "attempt": delivery.attempt,
                    "status": decision.status.value,
                    "next_attempt_at": decision.next_attempt_at,
                },
            )


def body_of(payload: dict[str, Any]) -> str:
    """The request body: the stored event payload as compact JSON (what is signed)."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)


class Watchdog:
    """Ends one attempt at its deadline, whatever the receiver does.

    httpx's timeout bounds each read, so a receiver that trickles its answer a byte at a time
    could hold the attempt for hours (then its row lock lapses, another loop sends it again). When
    the deadline passes this shuts the attempt's connection down, which wakes a read blocked on it
    at once (closing it would not). It shuts down a duplicate of the socket taken when it was
    connected and closes that only after the timer can no longer fire, so it never touches a file
    descriptor that another sender has since been given. Each attempt connects anew on a transport
    of its own: nothing else uses the connection it ends.
    """

    def __init__(self, deadline_s: float) -> None:
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._done = False
        self.fired = False
        self._timer = threading.Timer(deadline_s, self._fire)
        self._timer.daemon = True

    def __enter__(self) -> Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._timer.cancel()
        with self._lock:
            self._done = True
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            sock.close()

    def trace(self, event: str, info: dict[str, Any]) -> None:
        """httpcore's ``trace`` request extension: keeps each new connection's socket."""
        if event != "connection.connect_tcp.complete":
            return
        stream = info.get("return_value")
        sock = None if stream is None else stream.get_extra_info("socket")
        if not isinstance(sock, socket.socket):
            return
        duplicate = sock.dup()
        with self._lock:
            if self._done:
                duplicate.close()
                return
            self._sockets.append(duplicate)
            if self.fired:
                _shut_down(duplicate)

    def _fire(self) -> None:
        with self._lock:
            if self._done:
                return
            self.fired = True
            for sock in self._sockets:
                _shut_down(sock)


def _shut_down(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed by the peer


def post(
    egress: EgressPolicy,
    url: str,
    *,
    body: str,
    headers: dict[str, str],
    timeout_s: float,
    ssl_context: ssl.SSLContext,
    resolver: Resolver = socket.getaddrinfo,
) -> AttemptResult:
    """POST ``body`` to ``url`` at an address the egress guard allowed, within ``timeout_s`` in
    all (connecting, sending and the answer's status line and headers); never raises for what
    the receiver or the network does."""
    started = time.monotonic()
    deadline = started + timeout_s
    no_answer = f"no answer within {timeout_s:g} s"

    def result(status_code: int | None, error: str | None) -> AttemptResult:
        elapsed = int((time.monotonic() - started) * 1000)
        return AttemptResult(status_code=status_code, duration_ms=elapsed, error=error)

    try:
        destination = check_endpoint(egress, url, resolver)
        target = httpx.URL(url)
    except EgressRefused as exc:
        # The reason may say what a host name resolved to: the operator's log has it, the user
        # (who could map internal names with it) does not.
        logger.warning(
            "webhook to %s refused by the egress policy: %s",
            url,
            exc.reason,
            extra={"action": "webhook_egress_refused"},
        )
        return result(None, EGRESS_REFUSED_ERROR)
    except UnresolvableHostError as exc:
        return result(None, f"{exc}; no request was sent")
    except httpx.InvalidURL as exc:
        return result(None, f"invalid URL: {exc}; no request was sent")
    pinned_headers, extensions = pinned.host_and_tls(target, destination)
    request_headers = httpx.Headers(
        {
            "User-Agent": USER_AGENT,
            "Content-Type": "application/json",
            **pinned_headers,
            **headers,
        }
    )
    request_headers["Connection"] = "close"  # each attempt is its own connection
    with (
        Watchdog(max(0.0, deadline - time.monotonic())) as watchdog,
        httpx.Client(
            transport=httpx.HTTPTransport(verify=ssl_context),
            trust_env=False,
            follow_redirects=False,
        ) as client,
    ):
        extensions["trace"] = watchdog.trace
        for address_url, last in pinned.targets(target, destination):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or watchdog.fired:
                return result(None, no_answer)
            try:
                # Streamed: only the status matters, so a receiver's body is never downloaded.
                with client.stream(
                    "POST",
                    address_url,
                    content=body.encode(),
                    headers=request_headers,
                    timeout=min(timeout_s, remaining),
                    extensions=extensions,
                ) as response:
                    status_code = response.status_code
            except httpx.HTTPError as exc:
                if watchdog.fired or isinstance(exc, httpx.TimeoutException):
                    return result(None, f"{no_answer} ({type(exc).__name__})")
                if not isinstance(exc, httpx.ConnectError):
                    return result(None, _short(f"{type(exc).__name__}: {exc}"))
                if last:
                    return result(None, _short(f"could not connect: {exc}"))
            else:
                # An answer is an answer, even one the deadline cut short just after it came.
                return result(status_code, None)
    raise AssertionError("a checked destination has at least one address")


def _short(text: str) -> str:
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


class DeliveryLoop:
    """Claims due deliveries and sends them on a bounded pool of threads."""

    def __init__(
        self,
        store: DeliveryStore,
        *,
        secrets: SecretBox,
        egress: EgressPolicy,
        retry: RetryPolicy,
        concurrency: int,
        poll_interval_s: float,
        timeout_s: float,
        resolver: Resolver = socket.getaddrinfo,
    ) -> None:
        self._store = store
        self._secrets = secrets
        # Built at the first delivery, then kept (loading the CA bundle is slow, and holds
        # 0.7 MiB that a worker with no webhooks does not need); each attempt has its own transport.
        self._ssl_context: ssl.SSLContext | None = None
        self._ssl_lock = threading.Lock()
        self._egress = egress
        self._retry = retry
        self._concurrency = concurrency
        self._poll_interval_s = poll_interval_s
        self._timeout_s = timeout_s
        self._resolver = resolver
        # An attempt ends at its deadline (timeout_s, plus resolving the host and recording the
        # outcome): the lock comfortably outlives it, so a live attempt is never claimed again,
        # and a crashed loop's rows come back after it.
        self._lock_s = max(60.0, 6 * timeout_s)
        self._free = threading.Semaphore(concurrency)
        self._wake = threading.Event()

    def run(self, stop: threading.Event) -> None:
        """Deliver until ``stop``; then let the attempts in flight finish (each ends by its
        deadline) and record them."""
        with ThreadPoolExecutor(self._concurrency, thread_name_prefix="webhook") as senders:
            while not stop.is_set():
                try:
                    self.dispatch(senders)
                except Exception as exc:
                    # The database is away, say: log with the cause, try again after a pause.
                    logger.warning(
                        "webhook delivery loop: %s",
                        exc,
                        exc_info=exc,
                        extra={"action": "webhook_dispatch_failed"},
                    )
                self._wake.wait(self._poll_interval_s)
                self._wake.clear()

    def dispatch(self, senders: ThreadPoolExecutor) -> int:
        """Claim as many due deliveries as there are free senders and start them."""
        taken = 0
        while self._free.acquire(blocking=False):
            taken += 1
        if taken == 0:
            return 0
        try:
            claimed = self._store.claim(
                limit=taken, lock_s=self._lock_s, max_attempts=self._retry.max_attempts
            )
        except BaseException:
            self._release(taken)
            raise
        self._release(taken - len(claimed))
        for delivery in claimed:
            senders.submit(self._deliver, delivery)
        return len(claimed)

    def _tls(self) -> ssl.SSLContext:
        with self._ssl_lock:
            if self._ssl_context is None:
                self._ssl_context = httpx.create_ssl_context(trust_env=False)
            return self._ssl_context

    def _release(self, count: int) -> None:
        for _ in range(count):
            self._free.release()

    def _deliver(self, delivery: DueDelivery) -> None:
        try:
            self.attempt(delivery)
        except Exception as exc:
            # Not recorded (the database went away): the row comes back when its lock lapses.
            logger.warning(
                "webhook delivery %s: attempt %d not recorded: %s",
                delivery.id,
                delivery.attempt,
                exc,
                exc_info=exc,
                extra={"action": "webhook_record_failed", "delivery_id": str(delivery.id)},
            )
        finally:
            self._free.release()
            self._wake.set()  # a sender is free: look for more at once

    def attempt(self, delivery: DueDelivery) -> AttemptDecision:
        """Send one attempt of ``delivery``, record it, return what it decided."""
        now = utcnow()
        try:
            secret = self._secrets.open(delivery.sealed_secret)
        except SecretError as exc:
            result = AttemptResult(
                status_code=None, duration_ms=0, error=f"cannot open the signing secret: {exc}"
            )
        else:
            body = body_of(delivery.payload)
            headers = signed_headers(secret, msg_id=str(delivery.id), timestamp=now, body=body)
            result = post(
                self._egress,
                delivery.url,
                body=body,
                headers=headers,
                timeout_s=self._timeout_s,
                ssl_context=self._tls(),
                resolver=self._resolver,
            )
        decision = decide_attempt(
            self._retry, attempt=delivery.attempt, status_code=result.status_code, now=utcnow()
        )
        self._store.record(delivery, result, decision)
        logger.info(
            "webhook delivery %s (%s) attempt %d: %s -> %s",
            delivery.id,
            delivery.event,
            delivery.attempt,
            result.status_code if result.status_code is not None else result.error,
            decision.status.value,
            extra={
                "action": "webhook_attempt",
                "delivery_id": str(delivery.id),
                "attempt": delivery.attempt,
                "status_code": result.status_code,
                "duration_ms": result.duration_ms,
                "outcome": decision.status.value,
            },
        )
        return decision
