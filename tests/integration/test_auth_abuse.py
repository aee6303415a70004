"""Auth that resists abuse: the registration switch, rate limits in Redis, bounded hashing.

Real Postgres and Redis, and a real server on loopback per test with its own settings. Client
addresses are documentation ranges sent as X-Forwarded-For, which uvicorn trusts from loopback
(a reverse proxy's position): they are only rate-limit identities, nothing is sent to them.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor

import grpc
import httpx
import pytest
import uvicorn
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from chronoverse.accounts import RegistrationPolicy
from chronoverse.errors import ConfigurationError, ForbiddenError
from chronoverse.v1 import auth_pb2, auth_pb2_grpc
from services.server.app import create_app
from services.server.context import ServerContext
from services.server.grpc import create_grpc_server
from services.server.settings import Settings
from services.server.throttle import AuthRates, AuthThrottle, client_key, parse_rate
from tests.conftest import wait_until
from tests.integration.conftest import free_port

pytestmark = pytest.mark.integration

PASSWORD = "correct horse"


def email() -> str:
    return f"abuse-{uuid.uuid4().hex[:12]}@example.com"


def address() -> str:
    """A fresh client address (IPv6 documentation range) in a /64 of its own: its own rate-limit
    counters."""
    return f"2001:db8:{uuid.uuid4().hex[:4]}:{uuid.uuid4().hex[:4]}::1"


class Served:
    """A server context's HTTP app on a loopback port."""

    def __init__(self, context: ServerContext) -> None:
        self.port = free_port()
        self.server = uvicorn.Server(
            uvicorn.Config(create_app(context), host="127.0.0.1", port=self.port, log_config=None)
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        wait_until(lambda: self.server.started, timeout_s=20, message="uvicorn to start")

    def client(self, host: str | None = None) -> httpx.Client:
        """A client that the server sees at ``host`` (a fresh address by default)."""
        return httpx.Client(
            base_url=f"http://127.0.0.1:{self.port}",
            headers={"X-Forwarded-For": host or address()},
            timeout=30,
        )

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def make_context(
    environ: Mapping[str, str], database_url: str
) -> Iterator[Callable[..., ServerContext]]:
    opened: list[ServerContext] = []

    def make(**overrides: str) -> ServerContext:
        settings = Settings.from_environ(
            {
                **environ,
                "CHRONOVERSE_DATABASE_URL": database_url,
                "CHRONOVERSE_GRPC_HOST": "127.0.0.1",
                "CHRONOVERSE_GRPC_PORT": str(free_port()),
                "CHRONOVERSE_REGISTRATION": "open",
                **{f"CHRONOVERSE_{k.upper()}": v for k, v in overrides.items()},
            }
        )
        context = ServerContext(settings)
        context.open()
        opened.append(context)
        return context

    yield make
    for context in opened:
        context.close()


@pytest.fixture
def serve() -> Iterator[Callable[[ServerContext], Served]]:
    served: list[Served] = []

    def start(context: ServerContext) -> Served:
        served.append(Served(context))
        return served[-1]

    yield start
    for one in served:
        one.stop()


def register(http: httpx.Client, who: str | None = None) -> httpx.Response:
    return http.post("/auth/register", json={"email": who or email(), "password": PASSWORD})


def login(http: httpx.Client, who: str, password: str = PASSWORD) -> httpx.Response:
    return http.post("/auth/login", json={"email": who, "password": password})


# --- the registration switch ----------------------------------------------------------------


def test_first_user_registration_closes_once_a_user_exists(
    make_context: Callable[..., ServerContext],
    serve: Callable[[ServerContext], Served],
) -> None:
    context = make_context(registration="first-user")
    served = serve(context)
    with served.client() as http:
        first = register(http)
        assert first.status_code == 201, first.text
        second = register(http)
        assert second.status_code == 403
        assert second.json()["error"]["code"] == "registration_closed"
        assert "chronoverse users create" in second.json()["error"]["message"]
    # The operator's path is not limited by the policy.
    user = context.accounts.register(email(), PASSWORD)
    with served.client() as http:
        assert login(http, user.email).status_code == 200


def test_first_user_registration_admits_exactly_one_of_concurrent_first_users(
    make_context: Callable[..., ServerContext],
) -> None:
    context = make_context(registration="first-user", password_hash_concurrency="8")
    start = threading.Barrier(6)

    def attempt(_: int) -> int:
        start.wait()
        try:
            context.accounts.register(email(), PASSWORD, policy=RegistrationPolicy.FIRST_USER)
        except ForbiddenError:
            return 403
        return 201

    with ThreadPoolExecutor(6) as pool:
        statuses = sorted(pool.map(attempt, range(6)))
    assert statuses == [201, 403, 403, 403, 403, 403]


def test_closed_registration_refuses_even_the_first_user(
    make_context: Callable[..., ServerContext],
    serve: Callable[[ServerContext], Served],
) -> None:
    context = make_context(registration="closed")
    with serve(context).client() as http:
        refused = register(http)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "registration_closed"


def test_open_registration_takes_every_user(
    make_context: Callable[..., ServerContext], serve: Callable[[ServerContext], Served]
) -> None:
    with serve(make_context(registration="open")).client() as http:
        assert [register(http).status_code for _ in range(3)] == [201, 201, 201]


def test_an_unknown_registration_policy_is_a_configuration_error(
    environ: Mapping[str, str],
) -> None:
    with pytest.raises(ConfigurationError, match="CHRONOVERSE_REGISTRATION"):
        Settings.from_environ({**environ, "CHRONOVERSE_REGISTRATION": "sometimes"})


# --- rate limits ----------------------------------------------------------------------------


def test_logins_past_the_per_address_limit_get_429_with_retry_after(
    make_context: Callable[..., ServerContext],
    serve: Callable[[ServerContext], Served],
) -> None:
    context = make_context(auth_rate_limit_per_ip="3/minute")
    user = context.accounts.register(email(), PASSWORD)
    served = serve(context)
    host = address()
    with served.client(host) as http:
        answers = [login(http, user.email, "wrong password").status_code for _ in range(3)]
        assert answers == [401, 401, 401]
        limited = login(http, user.email)  # even the right password waits now
        assert limited.status_code == 429
        assert limited.json()["error"]["code"] == "rate_limited"
        assert 1 <= int(limited.headers["Retry-After"]) <= 60
    # Another address is counted on its own.
    with served.client() as other:
        assert login(other, user.email).status_code == 200
    # The limited address stays limited for the window.
    with served.client(host) as http:
        assert login(http, user.email).status_code == 429


def test_logins_past_the_per_email_limit_get_429_from_any_address(
    make_context: Callable[..., ServerContext],
    serve: Callable[[ServerContext], Served],
) -> None:
    context = make_context(auth_rate_limit_per_email="2/minute")
    user = context.accounts.register(email(), PASSWORD)
    served = serve(context)
    statuses = []
    for _ in range(3):
        with served.client() as http:  # a new address each time
            statuses.append(login(http, user.email, "wrong password").status_code)
    assert statuses == [401, 401, 429]
    # Another account from the same kind of address is not affected.
    other = context.accounts.register(email(), PASSWORD)
    with served.client() as http:
        assert login(http, other.email).status_code == 200


def test_registrations_are_limited_per_address(
    make_context: Callable[..., ServerContext],
    serve: Callable[[ServerContext], Served],
) -> None:
    context = make_context(auth_rate_limit_per_ip="2/minute")
    with serve(context).client() as http:
        assert [register(http).status_code for _ in range(3)] == [201, 201, 429]


def test_the_limits_are_shared_by_every_server_process(
    make_context: Callable[..., ServerContext],
    serve: Callable[[ServerContext], Served],
) -> None:
    # Two server contexts are two processes' worth of state: only Redis is shared.
    first = make_context(auth_rate_limit_per_ip="4/minute")
    second = make_context(auth_rate_limit_per_ip="4/minute")
    user = first.accounts.register(email(), PASSWORD)
    host = address()
    processes = [serve(first), serve(second)]
    statuses = []
    for served in (*processes, *processes, processes[0]):
        with served.client(host) as http:
            statuses.append(login(http, user.email).status_code)
    assert statuses == [200, 200, 200, 200, 429]


def test_grpc_login_past_the_limit_is_resource_exhausted_with_retry_info(
    make_context: Callable[..., ServerContext],
) -> None:
    context = make_context(auth_rate_limit_per_email="1/minute")
    user = context.accounts.register(email(), PASSWORD)
    server, _, port = create_grpc_server(context)
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = auth_pb2_grpc.AuthServiceStub(channel)  # type: ignore[no-untyped-call]
            request = auth_pb2.LoginRequest(email=user.email, password=PASSWORD)
            assert stub.Login(request).token
            with pytest.raises(grpc.RpcError) as raised:
                stub.Login(request)
    finally:
        server.stop(0).wait()
    error = raised.value
    assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    retry = error_details_pb2.RetryInfo()
    assert any(detail.Unpack(retry) for detail in status.details)
    assert 1 <= retry.retry_delay.seconds <= 60


def test_limits_let_attempts_through_when_redis_is_unreachable() -> None:
    unreachable = f"redis://127.0.0.1:{free_port()}/0"
    throttle = AuthThrottle(
        unreachable,
        AuthRates(per_ip=parse_rate("1/minute"), per_email=parse_rate("1/minute")),
        key_prefix="chronoverse:test-auth-limits",
    )
    for _ in range(3):
        throttle.attempt("login", client=address(), email="nobody@example.com")


def test_a_malformed_rate_is_a_configuration_error(environ: Mapping[str, str]) -> None:
    with pytest.raises(ConfigurationError, match="not a rate"):
        Settings.from_environ({**environ, "CHRONOVERSE_AUTH_RATE_LIMIT_PER_IP": "lots"})


# --- bounded hashing ------------------------------------------------------------------------


def test_logins_beyond_the_hashing_slots_wait_then_get_503(
    make_context: Callable[..., ServerContext],
    serve: Callable[[ServerContext], Served],
) -> None:
    # One slot, and almost no patience: of many concurrent logins, some find the slot taken.
    context = make_context(password_hash_concurrency="1", password_hash_wait_s="0.001")
    user = context.accounts.register(email(), PASSWORD)
    served = serve(context)
    start = threading.Barrier(8)

    def attempt(_: int) -> httpx.Response:
        with served.client() as http:
            start.wait()
            return login(http, user.email)

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(attempt, range(8)))
    statuses = [a.status_code for a in answers]
    assert set(statuses) <= {200, 503}, statuses
    assert 200 in statuses and 503 in statuses, statuses
    busy = next(a for a in answers if a.status_code == 503)
    assert busy.json()["error"]["code"] == "busy"
    assert int(busy.headers["Retry-After"]) >= 1


def test_the_11th_rapid_failed_login_for_one_email_gets_429_by_default(
    make_context: Callable[..., ServerContext],
    serve: Callable[[ServerContext], Served],
) -> None:
    context = make_context()  # the documented defaults: 10 a minute per email
    user = context.accounts.register(email(), PASSWORD)
    served = serve(context)
    statuses = []
    for _ in range(11):
        with served.client() as http:  # from a new address each time
            statuses.append(login(http, user.email, "wrong password").status_code)
    assert statuses == [401] * 10 + [429]


def test_ipv6_clients_are_counted_by_their_64(
    make_context: Callable[..., ServerContext],
    serve: Callable[[ServerContext], Served],
) -> None:
    # One host usually holds a whole /64: a new address in it is the same client.
    context = make_context(auth_rate_limit_per_ip="2/minute")
    served = serve(context)
    prefix = f"2001:db8:{uuid.uuid4().hex[:4]}:{uuid.uuid4().hex[:4]}"
    statuses = []
    for host in (f"{prefix}::1", f"{prefix}::2", f"{prefix}:1:2:3:4"):
        with served.client(host) as http:
            statuses.append(register(http).status_code)
    assert statuses == [201, 201, 429]
    assert client_key("192.0.2.7") == "192.0.2.7"
    assert client_key("::ffff:192.0.2.7") == "192.0.2.7"
