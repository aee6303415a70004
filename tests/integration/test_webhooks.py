"""Webhooks over the real server and Postgres: the routes and their validation, and the delivery
loop sending the outbox to a local receiver that verifies every signature with the Standard
Webhooks library (retries, timeouts, exhaustion, the egress guard)."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID, uuid4

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from chronoverse.egress import policy_from_settings
from chronoverse.postgres import create_pool
from chronoverse.secrets import SecretBox
from chronoverse.settings import PostgresSettings
from chronoverse.webhooks import RetryPolicy
from services.execution_worker.webhooks import DeliveryLoop, DeliveryStore
from tests.conftest import wait_until
from tests.integration.conftest import RunningServer, new_user
from tests.webhook_receiver import Receiver

pytestmark = pytest.mark.integration

EVENTS = ["workflow.failing", "workflow.recovered"]


def add_webhook(http: httpx.Client, user: dict[str, str], url: str, **body: Any) -> dict[str, Any]:
    response = http.post("/webhooks", json={"url": url, "events": EVENTS, **body}, headers=user)
    assert response.status_code == 201, response.text
    return dict(response.json())


def enqueue(server: RunningServer, webhook_id: str, event: str = "workflow.failing") -> UUID:
    """A delivery in the outbox, as a state flip writes it."""
    payload = {
        "type": event,
        "timestamp": "2025-01-01T00:00:00Z",
        "data": {"workflow_id": str(uuid4()), "workflow_name": "nightly", "status": "FAILED"},
    }
    with psycopg.connect(server.database_url, autocommit=True, row_factory=dict_row) as conn:
        row = conn.execute(
            "INSERT INTO webhook_deliveries (webhook_id, event, payload, dedup_key) "
            "VALUES (%s, %s, %s, %s) RETURNING id",
            (webhook_id, event, Jsonb(payload), f"{event}:{uuid4()}"),
        ).fetchone()
    assert row is not None
    return UUID(str(row["id"]))


@contextmanager
def delivering(
    server: RunningServer, *, max_attempts: int = 5, timeout_s: float = 1.0, concurrency: int = 2
) -> Iterator[DeliveryLoop]:
    """The execution worker's delivery loop, on a pool of its own, with fast retries."""
    settings = server.settings
    pool = create_pool(PostgresSettings(database_url=server.database_url), name="test-webhooks")
    loop = DeliveryLoop(
        DeliveryStore(pool),
        secrets=SecretBox.from_settings(settings),
        # The server's settings: loopback allowed (CHRONOVERSE_EGRESS_ALLOW_CIDRS of .run/env),
        # the stack's own Postgres and Redis ports refused.
        egress=policy_from_settings(settings),
        retry=RetryPolicy(max_attempts=max_attempts, base_delay_s=0.05, max_delay_s=0.2),
        concurrency=concurrency,
        poll_interval_s=0.05,
        timeout_s=timeout_s,
        resolver=loopback_only,
    )
    stop = threading.Event()
    thread = threading.Thread(target=loop.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield loop
    finally:
        stop.set()
        thread.join(timeout=timeout_s + 5)
        assert not thread.is_alive(), "the delivery loop did not stop"
        pool.close()


def loopback_only(host: str, port: int, /) -> Any:
    """Resolve ``localhost`` only: no test sends a packet (nor a DNS query) off loopback."""
    if host != "localhost":
        raise OSError(f"the tests resolve localhost only, not {host}")
    return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)


def deliveries(http: httpx.Client, user: dict[str, str], webhook_id: str) -> list[dict[str, Any]]:
    response = http.get(f"/webhooks/{webhook_id}/deliveries", headers=user)
    assert response.status_code == 200, response.text
    return list(response.json()["deliveries"])


def final(
    http: httpx.Client, user: dict[str, str], webhook_id: str, timeout_s: float = 20
) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        found = deliveries(http, user, webhook_id)
        return found[0] if found and found[0]["status"] != "PENDING" else None

    result: dict[str, Any] = wait_until(done, timeout_s=timeout_s, message="a final delivery")
    return result


# --- the routes -----------------------------------------------------------------------------------


def test_the_secret_is_shown_once_and_the_endpoint_listed_without_it(
    http: httpx.Client, user: dict[str, str]
) -> None:
    created = add_webhook(http, user, "https://hooks.example.com/chronoverse")
    assert created["secret"].startswith("whsec_") and len(created["secret"]) > 40
    assert created["events"] == EVENTS and created["workflow_id"] is None
    listed = http.get("/webhooks", headers=user).json()
    assert listed["webhooks"] == [{k: v for k, v in created.items() if k != "secret"}]
    assert listed["next_cursor"] is None
    assert "secret" not in http.get("/webhooks", headers=user).text
    assert http.delete(f"/webhooks/{created['id']}", headers=user).status_code == 204
    assert http.get("/webhooks", headers=user).json()["webhooks"] == []
    assert http.delete(f"/webhooks/{created['id']}", headers=user).status_code == 404


def test_the_secret_is_stored_sealed(
    http: httpx.Client, user: dict[str, str], server: RunningServer
) -> None:
    created = add_webhook(http, user, "https://hooks.example.com/a")
    with psycopg.connect(server.database_url) as conn:
        row = conn.execute("SELECT secret FROM webhooks WHERE id = %s", (created["id"],)).fetchone()
    assert row is not None and row[0].startswith("enc:v1:")
    assert SecretBox.from_settings(server.settings).open(row[0]) == created["secret"]


def test_pages_are_newest_first(http: httpx.Client, user: dict[str, str]) -> None:
    ids = [add_webhook(http, user, f"https://hooks.example.com/{n}")["id"] for n in range(3)]
    first = http.get("/webhooks", params={"limit": 2}, headers=user).json()
    assert [w["id"] for w in first["webhooks"]] == ids[:0:-1]
    rest = http.get(
        "/webhooks", params={"limit": 2, "cursor": first["next_cursor"]}, headers=user
    ).json()
    assert [w["id"] for w in rest["webhooks"]] == ids[:1] and rest["next_cursor"] is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "ftp://example.com/x"}, "url"),
        ({"url": "https://user:pw@example.com/x"}, "url"),
        ({"url": "https://example.com/" + "a" * 2048}, "url"),
        ({"url": "http:///nohost"}, "url"),
        ({"url": "https://example.com/a b"}, "url"),
        ({"url": 5}, "url"),
        ({"url": "http://169.254.169.254/latest"}, "url"),  # the egress guard, at creation
        ({"events": []}, "events"),
        ({"events": ["job.completed"]}, "events.0"),
        ({"events": ["build.failed", "build.failed"]}, "events"),
        ({"workflow_id": "nope"}, "workflow_id"),
        ({"extra": 1}, "extra"),
    ],
)
def test_every_field_is_validated(
    http: httpx.Client, user: dict[str, str], body: dict[str, Any], field: str
) -> None:
    request = {"url": "https://hooks.example.com/x", "events": ["build.failed"], **body}
    response = http.post("/webhooks", json=request, headers=user)
    assert response.status_code == 422, response.text
    fields = [d["field"] for d in response.json()["error"]["details"]]
    assert any(f == field or f.endswith(f".{field}") for f in fields), fields


def test_another_user_s_webhooks_and_workflows_are_not_found(
    http: httpx.Client, user: dict[str, str]
) -> None:
    mine = add_webhook(http, user, "https://hooks.example.com/mine")
    _, other = new_user(http)
    assert http.delete(f"/webhooks/{mine['id']}", headers=other).status_code == 404
    assert http.get(f"/webhooks/{mine['id']}/deliveries", headers=other).status_code == 404
    assert http.get("/webhooks", headers=other).json()["webhooks"] == []
    workflow = http.post(
        "/workflows",
        json={"name": "w", "kind": "HEARTBEAT", "payload": {}, "interval": 60},
        headers=user,
    ).json()
    response = http.post(
        "/webhooks",
        json={"url": "https://x.example.com/", "events": EVENTS, "workflow_id": workflow["id"]},
        headers=other,
    )
    assert response.status_code == 404, response.text
    scoped = add_webhook(http, user, "https://x.example.com/", workflow_id=workflow["id"])
    assert scoped["workflow_id"] == workflow["id"]
    assert http.get("/webhooks").status_code == 401


def test_a_user_has_a_bounded_number_of_webhooks(
    http: httpx.Client, user: dict[str, str], server: RunningServer
) -> None:
    limit = server.settings.max_webhooks_per_user
    for n in range(limit):
        add_webhook(http, user, f"https://hooks.example.com/{n}")
    response = http.post(
        "/webhooks", json={"url": "https://hooks.example.com/x", "events": EVENTS}, headers=user
    )
    assert response.status_code == 409, response.text
    assert response.json()["error"]["code"] == "webhook_quota_exceeded"


# --- the delivery loop ----------------------------------------------------------------------------


def test_a_receiver_that_fails_twice_gets_three_signed_attempts_then_it_is_delivered(
    http: httpx.Client, user: dict[str, str], server: RunningServer
) -> None:
    with Receiver(script=[500, 503]).serving() as receiver:
        created = add_webhook(http, user, receiver.url)
        receiver.secret = created["secret"]
        delivery_id = enqueue(server, created["id"])
        with delivering(server):
            delivery = final(http, user, created["id"])
    assert delivery["id"] == str(delivery_id)
    assert delivery["status"] == "DELIVERED" and delivery["attempts"] == 3
    assert delivery["event"] == "workflow.failing"
    assert [a["status_code"] for a in delivery["attempt_log"]] == [500, 503, 200]
    assert [a["attempt"] for a in delivery["attempt_log"]] == [1, 2, 3]
    assert all(a["error"] is None and a["duration_ms"] >= 0 for a in delivery["attempt_log"])
    assert delivery["finished_at"] is not None and delivery["next_attempt_at"] is None
    # Every attempt was signed anew with the same message id, and each one verified.
    assert len(receiver.received) == 3
    assert all(r.error is None for r in receiver.received), [r.error for r in receiver.received]
    assert {r.headers["webhook-id"] for r in receiver.received} == {str(delivery_id)}
    assert receiver.verified()[0]["type"] == "workflow.failing"
    assert receiver.received[0].headers["content-type"] == "application/json"


def test_a_wrong_secret_does_not_verify(
    http: httpx.Client, user: dict[str, str], server: RunningServer
) -> None:
    """The receiver's check is real: with another secret, nothing verifies."""
    with Receiver(secret="whsec_" + "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB").serving() as receiver:
        created = add_webhook(http, user, receiver.url)
        enqueue(server, created["id"])
        with delivering(server):
            final(http, user, created["id"])
    assert receiver.received and receiver.verified() == []


def test_a_hanging_receiver_times_out_and_is_retried(
    http: httpx.Client, user: dict[str, str], server: RunningServer
) -> None:
    with Receiver(script=["hang", "hang"]).serving() as receiver:
        created = add_webhook(http, user, receiver.url)
        receiver.secret = created["secret"]
        enqueue(server, created["id"])
        started = time.monotonic()
        with delivering(server, timeout_s=0.5):
            delivery = final(http, user, created["id"])
        elapsed = time.monotonic() - started
    assert delivery["status"] == "DELIVERED" and delivery["attempts"] == 3
    first, second, third = delivery["attempt_log"]
    for hung in (first, second):
        assert hung["status_code"] is None and "no answer within 0.5 s" in hung["error"]
        assert 400 <= hung["duration_ms"] < 3000
    assert third["status_code"] == 200
    assert elapsed < 15


def test_a_hanging_receiver_does_not_hold_up_other_deliveries(
    http: httpx.Client, user: dict[str, str], server: RunningServer
) -> None:
    with (
        Receiver(script=["hang"] * 20, hang_s=5).serving() as slow,
        Receiver().serving() as fast,
    ):
        hanging = add_webhook(http, user, slow.url)
        quick = add_webhook(http, user, fast.url)
        fast.secret = quick["secret"]
        enqueue(server, hanging["id"])
        with delivering(server, timeout_s=3, concurrency=2):
            slow.wait_for(1)
            enqueue(server, quick["id"])
            delivered = final(http, user, quick["id"], timeout_s=2.5)
    assert delivered["status"] == "DELIVERED"


def test_a_receiver_that_trickles_its_answer_is_cut_at_the_deadline_and_retried_once(
    http: httpx.Client, user: dict[str, str], server: RunningServer
) -> None:
    """Each byte comes well within the read timeout, the whole answer never would: the attempt's
    own deadline ends it, and its row is held past that deadline so no loop sends it twice."""
    with Receiver(script=["trickle"], hang_s=20, trickle_s=0.2).serving() as receiver:
        created = add_webhook(http, user, receiver.url)
        receiver.secret = created["secret"]
        delivery_id = enqueue(server, created["id"])
        with delivering(server, timeout_s=1.0):
            receiver.wait_for(1)
            assert held_for_s(server, delivery_id) > 3 * 1.0
            delivery = final(http, user, created["id"], timeout_s=10)
    assert delivery["status"] == "DELIVERED" and delivery["attempts"] == 2
    first, second = delivery["attempt_log"]
    assert first["status_code"] is None and "no answer within 1 s" in first["error"]
    assert 900 <= first["duration_ms"] < 3000  # about the deadline, far from the 20 s trickle
    assert second["status_code"] == 200 and second["error"] is None
    # Retried once, after the first attempt had ended (the receiver may still be trickling into
    # the closed connection), and promptly.
    assert receiver.count() == 2
    assert 0.9 <= receiver.received[1].at - receiver.received[0].at < 3


def held_for_s(server: RunningServer, delivery_id: UUID) -> float:
    """How much longer the delivery loop holds the row."""
    with psycopg.connect(server.database_url) as conn:
        row = conn.execute(
            "SELECT extract(epoch FROM locked_until - now()) FROM webhook_deliveries WHERE id = %s",
            (delivery_id,),
        ).fetchone()
    assert row is not None and row[0] is not None
    return float(row[0])


def test_one_user_s_hanging_endpoints_leave_a_sender_for_another_user(
    http: httpx.Client, user: dict[str, str], server: RunningServer
) -> None:
    """Users take turns, and an endpoint never has two deliveries in flight: one user's backlog
    on slow endpoints holds one sender per endpoint, not every sender."""
    with (
        Receiver(then="hang", hang_s=30).serving() as slow,
        Receiver(then="hang", hang_s=30).serving() as slower,
        Receiver().serving() as fast,
    ):
        first, second = add_webhook(http, user, slow.url), add_webhook(http, user, slower.url)
        for webhook in (first, first, first, second, second, second):
            enqueue(server, webhook["id"])
        _, other = new_user(http)
        theirs = add_webhook(http, other, fast.url)
        fast.secret = theirs["secret"]
        enqueue(server, theirs["id"])  # the newest of the due deliveries
        with delivering(server, timeout_s=5, concurrency=2):
            delivered = final(http, other, theirs["id"], timeout_s=3)
            # The freed sender goes to the endpoint that has nothing in flight.
            wait_until(lambda: slower.count() == 1 or None, timeout_s=3, message="2nd endpoint")
            time.sleep(0.3)
            assert (slow.count(), slower.count()) == (1, 1)  # both still hanging
    assert delivered["status"] == "DELIVERED" and delivered["attempts"] == 1
    assert slow.most_at_once == 1 and slower.most_at_once == 1


def test_exhausted_attempts_end_failed(
    http: httpx.Client, user: dict[str, str], server: RunningServer
) -> None:
    with Receiver(then=500).serving() as receiver:
        created = add_webhook(http, user, receiver.url)
        receiver.secret = created["secret"]
        enqueue(server, created["id"])
        with delivering(server, max_attempts=3):
            delivery = final(http, user, created["id"])
            time.sleep(0.3)  # no attempt after the last
    assert delivery["status"] == "FAILED" and delivery["attempts"] == 3
    assert [a["status_code"] for a in delivery["attempt_log"]] == [500, 500, 500]
    assert receiver.count() == 3


def test_an_address_the_egress_guard_refuses_is_recorded_and_never_contacted(
    http: httpx.Client,
    user: dict[str, str],
    server: RunningServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A host name (so creation cannot judge it) that resolves to loopback, at the stack's own
    # Postgres port: refused although CHRONOVERSE_EGRESS_ALLOW_CIDRS allows 127.0.0.0/8.
    port = urlsplit(server.database_url).port or 5432
    created = add_webhook(http, user, f"http://localhost:{port}/hook")
    enqueue(server, created["id"])
    with (
        caplog.at_level(logging.WARNING, logger="services.execution_worker.webhooks"),
        delivering(server, max_attempts=2),
    ):
        delivery = final(http, user, created["id"])
    assert delivery["status"] == "FAILED" and delivery["attempts"] == 2
    for attempt in delivery["attempt_log"]:
        assert attempt["status_code"] is None
        # What the name resolved to stays in the worker's log: a user could map internal names.
        assert attempt["error"] == (
            "blocked by the egress policy: the address is not allowed; no request was sent"
        )
    logged = [r.getMessage() for r in caplog.records if "egress" in r.getMessage()]
    assert any(
        f"localhost resolves to 127.0.0.1, and 127.0.0.1:{port} is a service of this Chronoverse"
        in message
        for message in logged
    ), logged


def test_a_delivery_taken_by_a_crashed_loop_comes_back(
    http: httpx.Client, user: dict[str, str], server: RunningServer
) -> None:
    with Receiver().serving() as receiver:
        created = add_webhook(http, user, receiver.url)
        receiver.secret = created["secret"]
        delivery_id = enqueue(server, created["id"])
        # A loop took it (attempt 1 counted) and died: its lock lapses.
        with psycopg.connect(server.database_url, autocommit=True) as conn:
            conn.execute(
                "UPDATE webhook_deliveries SET attempts = 1, locked_until = now() + "
                "interval '0.5 seconds' WHERE id = %s",
                (delivery_id,),
            )
        with delivering(server):
            time.sleep(0.3)
            assert receiver.count() == 0  # still held
            delivery = final(http, user, created["id"])
    assert delivery["status"] == "DELIVERED" and delivery["attempts"] == 2
    assert [a["attempt"] for a in delivery["attempt_log"]] == [2]


def test_key_rotation_seals_webhook_secrets_with_the_new_key(database_url: str) -> None:
    from chronoverse.secret_store import rotate_stored
    from chronoverse.secrets import generate_key
    from tests.factories import make_user

    old_key, new_key = generate_key(), generate_key()
    old = SecretBox([old_key])
    with psycopg.connect(database_url, autocommit=True) as conn:
        user_id = make_user(conn)
        conn.execute(
            "INSERT INTO webhooks (user_id, url, events, secret) VALUES (%s, %s, %s, %s)",
            (user_id, "https://x.example.com/", ["build.failed"], old.seal("whsec_c2VjcmV0")),
        )
    rotate_stored(database_url, SecretBox([new_key, old_key]))
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT secret FROM webhooks").fetchone()
    assert row is not None
    assert SecretBox([new_key]).open(row[0]) == "whsec_c2VjcmV0"


def test_the_grpc_edge_offers_the_same_operations(
    http: httpx.Client, user: dict[str, str], grpc_channel: Any
) -> None:
    import grpc

    from chronoverse.v1 import webhooks_pb2, webhooks_pb2_grpc

    stub = webhooks_pb2_grpc.WebhookServiceStub(grpc_channel)  # type: ignore[no-untyped-call]
    meta = (("authorization", user["Authorization"]),)
    created = stub.CreateWebhook(
        webhooks_pb2.CreateWebhookRequest(url="https://g.example.com/", events=["build.failed"]),
        metadata=meta,
    )
    assert created.secret.startswith("whsec_") and not created.webhook.HasField("workflow_id")
    listed = stub.ListWebhooks(webhooks_pb2.ListWebhooksRequest(), metadata=meta)
    assert [w.id for w in listed.webhooks] == [created.webhook.id]
    assert http.get("/webhooks", headers=user).json()["webhooks"][0]["id"] == created.webhook.id
    found = stub.ListWebhookDeliveries(
        webhooks_pb2.ListWebhookDeliveriesRequest(webhook_id=created.webhook.id), metadata=meta
    )
    assert list(found.deliveries) == []
    with pytest.raises(grpc.RpcError) as invalid:
        stub.CreateWebhook(
            webhooks_pb2.CreateWebhookRequest(url="ftp://x/", events=["build.failed"]),
            metadata=meta,
        )
    assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    stub.DeleteWebhook(webhooks_pb2.DeleteWebhookRequest(id=created.webhook.id), metadata=meta)
    with pytest.raises(grpc.RpcError) as gone:
        stub.DeleteWebhook(webhooks_pb2.DeleteWebhookRequest(id=created.webhook.id), metadata=meta)
    assert gone.value.code() == grpc.StatusCode.NOT_FOUND


def test_the_cli_adds_lists_shows_deliveries_and_removes(
    http: httpx.Client, user: dict[str, str], server: RunningServer
) -> None:
    import json

    from click.testing import CliRunner

    from chronoverse.cli import cli

    token = user["Authorization"].removeprefix("Bearer ")
    base = ["--server", server.http_url, "--token", token, "webhooks"]
    runner = CliRunner()
    added = runner.invoke(
        cli, [*base, "add", "http://127.0.0.1:9/cli", "--event", "workflow.failing", "--json"]
    )
    assert added.exit_code == 0, added.output
    webhook = json.loads(added.output)
    assert webhook["secret"].startswith("whsec_")
    listed = runner.invoke(cli, [*base, "list"])
    assert listed.exit_code == 0 and webhook["id"] in listed.output
    assert "whsec_" not in listed.output
    enqueue(server, webhook["id"])
    shown = runner.invoke(cli, [*base, "deliveries", webhook["id"]])
    assert shown.exit_code == 0 and "workflow.failing" in shown.output and "PENDING" in shown.output
    bad = runner.invoke(cli, [*base, "add", "https://c.example.com/", "--event", "job.done"])
    assert bad.exit_code == 2
    removed = runner.invoke(cli, [*base, "rm", webhook["id"]])
    assert removed.exit_code == 0, removed.output
    assert http.get("/webhooks", headers=user).json()["webhooks"] == []
