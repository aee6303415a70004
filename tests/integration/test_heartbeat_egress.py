"""The HEARTBEAT egress guard over real sockets, on loopback only.

Nothing here sends a packet off 127.0.0.1: refusals of other addresses are proven by the pure
tests in tests/unit/test_egress.py. Names resolve through a fake resolver.
"""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from chronoverse.domain import FailureKind
from chronoverse.egress import EgressPolicy, policy_from_settings
from chronoverse.payloads import HeartbeatPayload
from chronoverse.scheduling import RunResult
from chronoverse.settings import EgressSettings, PostgresSettings, RedisSettings
from services.execution_worker.heartbeat import run_heartbeat
from tests.resolvers import fake_resolver

pytestmark = pytest.mark.integration

LOOPBACK_ONLY = EgressPolicy(allow=(IPv4Network("127.0.0.0/8"), IPv6Network("::1/128")))
BLOCKED = "blocked by the egress policy"


# Real DNS knows neither name: a request that reaches the server went to the checked address.
RESOLVER = fake_resolver({"localhost": ["127.0.0.1"], "monitored.test": ["127.0.0.1"]})


class Recorder:
    """A local HTTP server that answers 200 and keeps the Host header of each request."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.hosts: list[str | None] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.hosts.append(self.headers.get("Host"))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]

    @contextmanager
    def serving(self) -> Iterator[Recorder]:
        thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.server.shutdown()
            self.server.server_close()
            thread.join(timeout=5)


@contextmanager
def garbage_peer(reply: bytes) -> Iterator[int]:
    """A TCP service on loopback that is not HTTP: it answers every connection with ``reply``."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.sendall(reply)
                conn.settimeout(2)
                try:
                    conn.recv(65536)  # the request, so the client reads the reply before EOF
                except OSError:
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(follow_redirects=False) as client:
        yield client


def heartbeat(endpoint: str, **fields: Any) -> HeartbeatPayload:
    return HeartbeatPayload.model_validate({"endpoint": endpoint, "timeout_seconds": 5, **fields})


def assert_user_failure(result: RunResult) -> str:
    assert result.failure_kind is FailureKind.USER, result
    assert result.error is not None
    return result.error


def test_a_local_endpoint_is_reached_when_loopback_is_allowed(client: httpx.Client) -> None:
    with Recorder().serving() as server:
        url = f"http://127.0.0.1:{server.port}/healthz"
        assert run_heartbeat(heartbeat(url), client, LOOPBACK_ONLY, RESOLVER).succeeded
        assert server.hosts == [f"127.0.0.1:{server.port}"]


def test_a_local_endpoint_is_blocked_by_the_default_policy(
    client: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    with Recorder().serving() as server:
        url = f"http://localhost:{server.port}/healthz"
        error = assert_user_failure(run_heartbeat(heartbeat(url), client, EgressPolicy(), RESOLVER))
        assert BLOCKED in error and "localhost resolves to an address" in error
        assert server.hosts == []
    # What the name resolved to is for the operator's log, never for the job's owner.
    assert "127.0.0.1" not in error
    assert "localhost resolves to 127.0.0.1" in caplog.text and "loopback" in caplog.text


class PostgresAndEgress(PostgresSettings, EgressSettings):
    """What a worker's settings say about Postgres and egress."""


def test_the_configured_postgres_port_is_refused_without_connecting(
    environ: Mapping[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    settings = PostgresAndEgress.from_environ(
        {**environ, "CHRONOVERSE_EGRESS_ALLOW_CIDRS": "127.0.0.0/8,::1/128"}
    )
    database = urlsplit(settings.database_url)
    if database.hostname not in {"127.0.0.1", "localhost", "::1"}:
        pytest.skip("Postgres is not on this host")
    port = database.port or 5432
    policy = policy_from_settings(settings, resolver=RESOLVER)
    sent: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200)

    with httpx.Client(transport=httpx.MockTransport(record)) as never:
        result = run_heartbeat(heartbeat(f"http://localhost:{port}/"), never, policy, RESOLVER)
    error = assert_user_failure(result)
    assert BLOCKED in error and f"127.0.0.1:{port}" not in error
    assert f"127.0.0.1:{port}" in caplog.text and "stack" in caplog.text
    assert sent == []  # refused before any connection


class RedisAndEgress(RedisSettings, EgressSettings):
    """What a worker's settings say about Redis and egress."""


def test_the_configured_redis_port_is_refused_without_connecting(
    environ: Mapping[str, str],
) -> None:
    # Everything allowed: only the stack rule can refuse. Never skipped: nothing is sent, and a
    # Redis host name (a compose service in CI) is only resolved, by the system's resolver.
    settings = RedisAndEgress.from_environ(
        {**environ, "CHRONOVERSE_EGRESS_ALLOW_CIDRS": "0.0.0.0/0,::/0"}
    )
    redis_url = urlsplit(settings.redis_url)
    host = redis_url.hostname or "localhost"
    port = redis_url.port or 6379

    def resolver(name: str, to_port: int, /) -> Sequence[tuple[Any, Any, Any, Any, Any]]:
        if name in {"localhost", "monitored.test"}:
            return RESOLVER(name, to_port)
        return socket.getaddrinfo(name, to_port, type=socket.SOCK_STREAM)

    policy = policy_from_settings(settings, resolver=resolver)
    sent: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200)

    url_host = f"[{host}]" if ":" in host else host
    with httpx.Client(transport=httpx.MockTransport(record)) as never:
        result = run_heartbeat(heartbeat(f"http://{url_host}:{port}/"), never, policy, resolver)
    error = assert_user_failure(result)
    assert BLOCKED in error and f":{port}" in error and "stack" in error
    assert sent == []  # refused before any connection


@pytest.mark.parametrize(
    "reply",
    [b"+PONG\r\n", b"SSH-2.0-secret_banner\r\n", b"-ERR wrong \x00\xff secret\r\n"],
    ids=["redis", "ssh", "binary"],
)
def test_a_non_http_peer_is_a_user_failure_without_its_bytes(
    client: httpx.Client, reply: bytes
) -> None:
    with garbage_peer(reply) as port:
        result = run_heartbeat(
            heartbeat(f"http://127.0.0.1:{port}/"), client, LOOPBACK_ONLY, RESOLVER
        )
    error = assert_user_failure(result)
    assert "did not answer with valid HTTP" in error
    for word in ["PONG", "SSH", "secret", "ERR", "\x00", "\ufffd", "\\x"]:
        assert word not in error


def test_a_closed_port_is_described_in_words(client: httpx.Client) -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    result = run_heartbeat(heartbeat(f"http://127.0.0.1:{port}/"), client, LOOPBACK_ONLY, RESOLVER)
    assert "connection refused" in assert_user_failure(result)


def test_the_request_goes_to_the_checked_address_with_the_original_host(
    client: httpx.Client,
) -> None:
    with Recorder().serving() as server:
        for host in ["localhost", "monitored.test"]:
            url = f"http://{host}:{server.port}/healthz"
            assert run_heartbeat(heartbeat(url), client, LOOPBACK_ONLY, RESOLVER).succeeded
        assert server.hosts == [f"localhost:{server.port}", f"monitored.test:{server.port}"]


def test_a_refused_connection_falls_back_to_the_next_checked_address(
    client: httpx.Client,
) -> None:
    # The server listens on 127.0.0.1 only; the name's first address is ::1.
    resolver = fake_resolver({"dual.test": ["::1", "127.0.0.1"]})
    with Recorder().serving() as server:
        url = f"http://dual.test:{server.port}/healthz"
        assert run_heartbeat(heartbeat(url), client, LOOPBACK_ONLY, resolver).succeeded
        assert server.hosts == [f"dual.test:{server.port}"]


def test_tls_checks_the_original_name_on_the_checked_address(tmp_path: Path) -> None:
    ca = _certificate_authority(tmp_path, "monitored.test")
    with (
        Recorder(tls=ca.server).serving() as server,
        httpx.Client(verify=ca.client) as client,
    ):
        url = f"https://monitored.test:{server.port}/healthz"
        assert run_heartbeat(heartbeat(url), client, LOOPBACK_ONLY, RESOLVER).succeeded
        assert server.hosts == [f"monitored.test:{server.port}"]
        # The certificate does not name localhost: the handshake fails, in words.
        url = f"https://localhost:{server.port}/healthz"
        error = assert_user_failure(run_heartbeat(heartbeat(url), client, LOOPBACK_ONLY, RESOLVER))
        assert "TLS failure" in error and "certificate" in error


class _Contexts:
    def __init__(self, server: ssl.SSLContext, client: ssl.SSLContext) -> None:
        self.server = server
        self.client = client


def _certificate_authority(directory: Path, name: str) -> _Contexts:
    """A self-signed certificate for ``name`` only, and a client context that trusts it."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_pem = certificate.public_bytes(serialization.Encoding.PEM)
    (directory / "cert.pem").write_bytes(cert_pem)
    (directory / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(directory / "cert.pem", directory / "key.pem")
    client = ssl.create_default_context(cadata=cert_pem.decode())
    return _Contexts(server, client)
