"""The HTTP API over real HTTP against real Postgres."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from tests.integration.conftest import RunningServer, new_user

pytestmark = pytest.mark.integration

HEARTBEAT = {"name": "ping", "kind": "HEARTBEAT", "payload": {}, "interval": 5}
CONTAINER = {
    "name": "hello",
    "kind": "CONTAINER",
    "interval": 60,
    "payload": {"image": "local/busybox:latest", "command": ["echo"], "args": ["hi"]},
}
WORKFLOW_FIELDS = {
    "id",
    "retain_logs",
    "cron",
    "timezone",
    "dst",
    "catchup",
    "catchup_window_minutes",
    "state",
    "paused_at",
    "next_run_at",
    "user_id",
    "name",
    "kind",
    "payload",
    "interval",
    "max_consecutive_job_failures_allowed",
    "consecutive_job_failures_count",
    "build_status",
    "build_error",
    "generation",
    "created_at",
    "updated_at",
    "terminated_at",
    "terminated_reason",
}


def create(
    http: httpx.Client, auth: dict[str, str], body: dict[str, Any] | None = None, **headers: str
) -> httpx.Response:
    return http.post("/workflows", json=body or HEARTBEAT, headers={**auth, **headers})


def error_fields(response: httpx.Response) -> set[str]:
    body = response.json()
    assert set(body) == {"error"}
    assert {"code", "message", "details"} <= set(body["error"])
    return {d["field"] for d in body["error"]["details"]}


# --- auth ---------------------------------------------------------------------------------------


def test_register_login_and_logout(http: httpx.Client) -> None:
    email, auth = new_user(http)
    assert http.get("/workflows", headers=auth).status_code == 200
    duplicate = http.post("/auth/register", json={"email": email.upper(), "password": "whatever1"})
    assert duplicate.status_code == 409
    assert duplicate.json()["error"]["code"] == "email_taken"
    assert http.post("/auth/logout", headers=auth).status_code == 204
    revoked = http.get("/workflows", headers=auth)
    assert revoked.status_code == 401
    assert revoked.json()["error"]["code"] == "unauthenticated"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "not-an-email", "password": "long enough"}, "email"),
        ({"email": "a@example.com", "password": "short"}, "password"),
        ({"email": "a@example.com"}, "password"),
        ({"email": 5, "password": "long enough"}, "email"),
        ({"email": "a@example.com", "password": "long enough", "admin": True}, "admin"),
        ({"email": "a\x00b@example.com", "password": "long enough"}, "email"),
    ],
)
def test_register_names_the_bad_field(http: httpx.Client, body: dict[str, Any], field: str) -> None:
    response = http.post("/auth/register", json=body)
    assert response.status_code == 422
    assert field in error_fields(response)


def test_wrong_password_is_401(http: httpx.Client) -> None:
    email, _ = new_user(http)
    response = http.post("/auth/login", json={"email": email, "password": "wrong password"})
    assert response.status_code == 401
    unknown = http.post(
        "/auth/login", json={"email": "nobody@example.com", "password": "whatever1"}
    )
    assert unknown.status_code == 401


@pytest.mark.parametrize("header", [None, "Bearer nope", "Basic abc", "Bearer", "bearer  x y"])
def test_requests_without_a_valid_token_are_401(http: httpx.Client, header: str | None) -> None:
    headers = {"Authorization": header} if header is not None else {}
    response = http.get("/workflows", headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"


# --- create and validate ------------------------------------------------------------------------


def test_create_heartbeat_returns_every_field(http: httpx.Client, user: dict[str, str]) -> None:
    response = create(http, user)
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == WORKFLOW_FIELDS
    assert body["kind"] == "HEARTBEAT"
    assert body["payload"] == {}
    assert body["interval"] == 5
    assert body["max_consecutive_job_failures_allowed"] == 3
    assert body["consecutive_job_failures_count"] == 0
    assert body["build_status"] == "QUEUED"
    assert body["terminated_at"] is None
    assert http.get(f"/workflows/{body['id']}", headers=user).json() == body


def test_create_http_heartbeat_fills_defaults(http: httpx.Client, user: dict[str, str]) -> None:
    payload = {"endpoint": "https://example.com/health"}
    response = create(http, user, {**HEARTBEAT, "payload": payload})
    assert response.status_code == 201, response.text
    assert response.json()["payload"] == {
        "endpoint": "https://example.com/health",
        "method": "GET",
        "expected_status_code": 200,
        "timeout_seconds": 10.0,
        "headers": {},
    }


def test_container_payload_as_a_json_string_like_the_original_api(
    http: httpx.Client, user: dict[str, str]
) -> None:
    raw = '{"image":"python:3.11-alpine","command":["python","-c"],"args":["print(1)"]}'
    response = create(
        http, user, {"name": "py", "kind": "CONTAINER", "payload": raw, "interval": 1}
    )
    assert response.status_code == 201, response.text
    payload = response.json()["payload"]
    assert payload["image"] == "python:3.11-alpine"
    assert payload["command"] == ["python", "-c"]
    assert payload["args"] == ["print(1)"]
    assert payload["network"] == "none"
    assert payload["pull_policy"] == "if-not-present"
    assert payload["resources"] == {"memory_mb": 256, "cpus": 1.0, "pids": 256}
    assert payload["timeout_seconds"] == 3600


def test_a_matching_kind_inside_the_payload_is_accepted(
    http: httpx.Client, user: dict[str, str]
) -> None:
    body = {**CONTAINER, "payload": {**CONTAINER["payload"], "kind": "CONTAINER"}}  # type: ignore[dict-item]
    response = create(http, user, body)
    assert response.status_code == 201
    assert "kind" not in response.json()["payload"]


def _container(**payload: Any) -> dict[str, Any]:
    return {**CONTAINER, "payload": {"image": "local/busybox:latest", **payload}}


def _heartbeat(**payload: Any) -> dict[str, Any]:
    return {**HEARTBEAT, "payload": payload}


INVALID = [
    # top level
    ({**HEARTBEAT, "name": ""}, "name"),
    ({**HEARTBEAT, "name": "x" * 201}, "name"),
    ({**HEARTBEAT, "name": 7}, "name"),
    ({**HEARTBEAT, "kind": "CRON"}, "kind"),
    ({**HEARTBEAT, "interval": 0}, "interval"),
    ({**HEARTBEAT, "interval": 10081}, "interval"),
    ({**HEARTBEAT, "interval": "5"}, "interval"),
    ({**HEARTBEAT, "interval": 1.5}, "interval"),
    ({"name": "x", "kind": "HEARTBEAT", "payload": {}}, "interval"),
    (
        {**HEARTBEAT, "max_consecutive_job_failures_allowed": 0},
        "max_consecutive_job_failures_allowed",
    ),
    (
        {**HEARTBEAT, "max_consecutive_job_failures_allowed": 101},
        "max_consecutive_job_failures_allowed",
    ),
    ({**HEARTBEAT, "schedule": "* * * * *"}, "schedule"),
    ({**HEARTBEAT, "payload": 5}, "payload"),
    ({**HEARTBEAT, "payload": "{not json"}, "payload"),
    ({**HEARTBEAT, "payload": "[1]"}, "payload"),
    # HEARTBEAT payload
    (_heartbeat(endpoint="ftp://example.com"), "payload.endpoint"),
    (_heartbeat(endpoint="not a url"), "payload.endpoint"),
    (_heartbeat(endpoint="https://example.com", method="POST"), "payload.method"),
    (
        _heartbeat(endpoint="https://example.com", expected_status_code=99),
        "payload.expected_status_code",
    ),
    (
        _heartbeat(endpoint="https://example.com", expected_status_code=600),
        "payload.expected_status_code",
    ),
    (_heartbeat(endpoint="https://example.com", timeout_seconds=0), "payload.timeout_seconds"),
    (_heartbeat(endpoint="https://example.com", timeout_seconds=301), "payload.timeout_seconds"),
    (_heartbeat(endpoint="https://example.com", headers={"bad name": "x"}), "payload.headers"),
    (_heartbeat(endpoint="https://example.com", headers={"X": "a\r\nb"}), "payload.headers"),
    (_heartbeat(endpoint="https://example.com", headers={"X": 1}), "payload.headers.X"),
    (_heartbeat(method="GET"), "payload.endpoint"),
    (_heartbeat(endpoint="https://example.com", verb="GET"), "payload.verb"),
    (_heartbeat(kind="CONTAINER"), "payload.kind"),
    # CONTAINER payload
    ({**CONTAINER, "payload": {}}, "payload.image"),
    (_container(image="Not/Valid"), "payload.image"),
    (_container(image="a b"), "payload.image"),
    (_container(command="echo hi"), "payload.command"),
    (_container(command=[1]), "payload.command.0"),
    (_container(args=["ok", None]), "payload.args.1"),
    (_container(env={"1BAD": "x"}), "payload.env"),
    (_container(env={"GOOD": 1}), "payload.env.GOOD"),
    (_container(env={f"V{i}": "x" for i in range(101)}), "payload.env"),
    (_container(env={"BIG": "x" * 40000}), "payload.env.BIG"),
    (_container(working_dir="relative/dir"), "payload.working_dir"),
    (_container(timeout_seconds=0), "payload.timeout_seconds"),
    (_container(timeout_seconds=86401), "payload.timeout_seconds"),
    (_container(resources={"memory_mb": 1}), "payload.resources.memory_mb"),
    (_container(resources={"cpus": 0}), "payload.resources.cpus"),
    (_container(resources={"pids": 1}), "payload.resources.pids"),
    (_container(resources={"gpus": 1}), "payload.resources.gpus"),
    (_container(network="overlay"), "payload.network"),
    (_container(pull_policy="sometimes"), "payload.pull_policy"),
    (_container(privileged=True), "payload.privileged"),
    (_container(kind="HEARTBEAT"), "payload.kind"),
    (_container(args=["ok", "nul\x00"]), "payload.args.1"),
    (_heartbeat(endpoint="https://example.com", headers={"X": "a\x00"}), "payload.headers.X"),
]


@pytest.mark.parametrize(
    ("body", "field"), INVALID, ids=[f"{f}-{i}" for i, (_, f) in enumerate(INVALID)]
)
def test_every_bad_field_is_a_422_naming_it(
    http: httpx.Client, user: dict[str, str], body: dict[str, Any], field: str
) -> None:
    response = create(http, user, body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_fields"
    assert field in error_fields(response), response.json()


def test_malformed_json_is_400(http: httpx.Client, user: dict[str, str]) -> None:
    response = http.post(
        "/workflows", content=b"{nope", headers={**user, "Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_json"


def test_a_body_over_the_limit_is_413(
    http: httpx.Client, user: dict[str, str], server: RunningServer
) -> None:
    big = _container(args=["x" * 1000] * (server.settings.max_request_bytes // 1000 + 1))
    response = create(http, user, big)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


def test_unknown_routes_and_ids_are_json_errors(http: httpx.Client, user: dict[str, str]) -> None:
    missing = http.get("/workflows/00000000-0000-0000-0000-000000000000", headers=user)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    assert http.get("/nowhere").json()["error"]["code"] == "not_found"
    bad_id = http.get("/workflows/not-a-uuid", headers=user)
    assert bad_id.status_code == 422
    assert "workflow_id" in error_fields(bad_id)


# --- isolation ----------------------------------------------------------------------------------


def test_another_users_workflow_is_404_everywhere(http: httpx.Client) -> None:
    _, alice = new_user(http)
    _, bob = new_user(http)
    workflow = create(http, alice).json()
    path = f"/workflows/{workflow['id']}"
    assert http.get(path, headers=bob).status_code == 404
    assert http.put(path, json={"name": "mine"}, headers=bob).status_code == 404
    assert http.post(f"{path}/terminate", headers=bob).status_code == 404
    assert http.delete(path, headers=bob).status_code == 404
    assert http.get("/workflows", headers=bob).json()["workflows"] == []
    untouched = http.get(path, headers=alice).json()
    assert untouched == workflow


# --- list ---------------------------------------------------------------------------------------


def test_list_pages_with_a_cursor_newest_first(http: httpx.Client, user: dict[str, str]) -> None:
    ids = [create(http, user, {**HEARTBEAT, "name": f"w{i}"}).json()["id"] for i in range(5)]
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = http.get("/workflows", params=params, headers=user).json()
        assert len(page["workflows"]) <= 2
        seen.extend(w["id"] for w in page["workflows"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))


def test_list_filters(http: httpx.Client, user: dict[str, str]) -> None:
    beat = create(http, user, {**HEARTBEAT, "name": "nightly 100%_done"}).json()
    box = create(http, user, CONTAINER).json()
    http.post(f"/workflows/{box['id']}/terminate", headers=user)

    def ids(**params: Any) -> list[str]:
        response = http.get("/workflows", params=params, headers=user)
        assert response.status_code == 200, response.text
        return [w["id"] for w in response.json()["workflows"]]

    assert ids(kind="CONTAINER") == [box["id"]]
    assert ids(terminated="true") == [box["id"]]
    assert ids(terminated="false") == [beat["id"]]
    assert ids(name="100%_") == [beat["id"]]
    assert ids(name="100%x") == []
    assert ids(build_status="QUEUED") == [box["id"], beat["id"]]
    assert ids(build_status="COMPLETED") == []


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 201}, "limit"),
        ({"kind": "CRON"}, "kind"),
        ({"cursor": "garbage"}, "cursor"),
        ({"terminated": "maybe"}, "terminated"),
    ],
)
def test_bad_list_parameters_name_the_parameter(
    http: httpx.Client, user: dict[str, str], params: dict[str, Any], field: str
) -> None:
    response = http.get("/workflows", params=params, headers=user)
    assert response.status_code == 422
    assert field in error_fields(response)


# --- update, terminate, delete ------------------------------------------------------------------


def test_update_changes_only_the_given_fields(http: httpx.Client, user: dict[str, str]) -> None:
    workflow = create(http, user).json()
    response = http.put(
        f"/workflows/{workflow['id']}", json={"name": "renamed", "interval": 10}, headers=user
    )
    assert response.status_code == 200, response.text
    updated = response.json()
    assert (updated["name"], updated["interval"]) == ("renamed", 10)
    assert updated["payload"] == workflow["payload"]
    assert updated["generation"] == workflow["generation"]
    assert updated["updated_at"] > workflow["updated_at"]


def test_a_changed_container_image_queues_a_rebuild_of_a_new_generation(
    http: httpx.Client, user: dict[str, str], server: RunningServer
) -> None:
    workflow = create(http, user, CONTAINER).json()
    with psycopg.connect(server.database_url) as conn:  # as if the build had completed
        conn.execute(
            "UPDATE workflows SET build_status = 'COMPLETED' WHERE id = %s", (workflow["id"],)
        )
    payload = {**CONTAINER["payload"], "image": "local/python:3.11"}  # type: ignore[dict-item]
    updated = http.put(
        f"/workflows/{workflow['id']}", json={"payload": payload}, headers=user
    ).json()
    assert updated["build_status"] == "QUEUED"
    assert updated["generation"] == workflow["generation"] + 1
    assert updated["payload"]["image"] == "local/python:3.11"
    same = http.put(f"/workflows/{workflow['id']}", json={"payload": payload}, headers=user).json()
    assert same["generation"] == updated["generation"]


def test_update_validates_like_create(http: httpx.Client, user: dict[str, str]) -> None:
    workflow = create(http, user, CONTAINER).json()
    path = f"/workflows/{workflow['id']}"
    assert "payload.image" in error_fields(
        http.put(path, json={"payload": {"image": "BAD"}}, headers=user)
    )
    assert "interval" in error_fields(http.put(path, json={"interval": 0}, headers=user))
    assert "kind" in error_fields(http.put(path, json={"kind": "HEARTBEAT"}, headers=user))
    assert "body" in error_fields(http.put(path, json={}, headers=user))


def test_terminate_is_final_and_cancels_pending_jobs(
    http: httpx.Client, user: dict[str, str], server: RunningServer
) -> None:
    workflow = create(http, user).json()
    with psycopg.connect(server.database_url) as conn:
        conn.execute(
            "INSERT INTO jobs (workflow_id, user_id, trigger, scheduled_at, status) "
            "VALUES (%s, %s, 'AUTOMATIC', now(), 'QUEUED')",
            (workflow["id"], workflow["user_id"]),
        )
    response = http.post(f"/workflows/{workflow['id']}/terminate", headers=user)
    assert response.status_code == 200
    terminated = response.json()
    assert terminated["terminated_at"] is not None
    assert terminated["terminated_reason"] == "terminated by the user"
    with psycopg.connect(server.database_url) as conn:
        statuses = [
            r[0]
            for r in conn.execute(
                "SELECT status FROM jobs WHERE workflow_id = %s", (workflow["id"],)
            )
        ]
    assert statuses == ["CANCELED"]

    again = http.post(f"/workflows/{workflow['id']}/terminate", headers=user)
    assert again.status_code == 200
    assert again.json()["terminated_at"] == terminated["terminated_at"]
    conflict = http.put(f"/workflows/{workflow['id']}", json={"name": "back to life"}, headers=user)
    assert conflict.status_code == 409
    assert conflict.json()["error"]["code"] == "workflow_terminated"


def test_delete_removes_the_workflow(http: httpx.Client, user: dict[str, str]) -> None:
    workflow = create(http, user).json()
    assert http.delete(f"/workflows/{workflow['id']}", headers=user).status_code == 204
    assert http.get(f"/workflows/{workflow['id']}", headers=user).status_code == 404
    assert http.delete(f"/workflows/{workflow['id']}", headers=user).status_code == 404


def test_every_change_writes_an_outbox_event(
    http: httpx.Client, user: dict[str, str], server: RunningServer
) -> None:
    workflow = create(http, user).json()
    path = f"/workflows/{workflow['id']}"
    http.put(path, json={"name": "n"}, headers=user)
    http.post(f"{path}/terminate", headers=user)
    http.delete(path, headers=user)
    with psycopg.connect(server.database_url) as conn:
        rows = conn.execute(
            "SELECT topic, payload FROM outbox WHERE key = %s ORDER BY id", (workflow["id"],)
        ).fetchall()
    assert [(t, p["type"]) for t, p in rows] == [
        ("workflows", "workflow.created"),
        ("workflows", "workflow.updated"),
        ("workflows", "workflow.terminated"),
        ("workflows", "workflow.deleted"),
    ]
    assert all(p["v"] == 1 and p["workflow_id"] == workflow["id"] for _, p in rows)


# --- idempotency --------------------------------------------------------------------------------


def test_the_same_key_and_body_replay_the_first_response(
    http: httpx.Client, user: dict[str, str]
) -> None:
    first = create(http, user, HEARTBEAT, **{"Idempotency-Key": "abc-1"})
    second = create(http, user, HEARTBEAT, **{"Idempotency-Key": "abc-1"})
    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    assert second.headers.get("Idempotent-Replayed") == "true"
    assert len(http.get("/workflows", headers=user).json()["workflows"]) == 1


def test_the_same_key_with_another_body_is_409(http: httpx.Client, user: dict[str, str]) -> None:
    assert create(http, user, HEARTBEAT, **{"Idempotency-Key": "k"}).status_code == 201
    other = create(http, user, {**HEARTBEAT, "name": "other"}, **{"Idempotency-Key": "k"})
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "idempotency_key_reused"


def test_keys_are_per_user(http: httpx.Client) -> None:
    _, alice = new_user(http)
    _, bob = new_user(http)
    a = create(http, alice, HEARTBEAT, **{"Idempotency-Key": "shared"}).json()
    b = create(http, bob, HEARTBEAT, **{"Idempotency-Key": "shared"}).json()
    assert a["id"] != b["id"]


def test_an_expired_key_runs_again(
    http: httpx.Client, user: dict[str, str], server: RunningServer
) -> None:
    first = create(http, user, HEARTBEAT, **{"Idempotency-Key": "old"}).json()
    with psycopg.connect(server.database_url) as conn:
        conn.execute(
            "UPDATE idempotency_keys SET expires_at = now() - interval '1 second' WHERE key = 'old'"
        )
    second = create(http, user, HEARTBEAT, **{"Idempotency-Key": "old"}).json()
    assert second["id"] != first["id"]


def test_a_failed_request_does_not_burn_its_key(http: httpx.Client, user: dict[str, str]) -> None:
    bad = create(http, user, {**HEARTBEAT, "interval": 0}, **{"Idempotency-Key": "retry"})
    assert bad.status_code == 422
    assert create(http, user, HEARTBEAT, **{"Idempotency-Key": "retry"}).status_code == 201


def test_concurrent_requests_with_one_key_create_one_workflow(
    http: httpx.Client, user: dict[str, str], server: RunningServer
) -> None:
    barrier = threading.Barrier(6)
    results: list[httpx.Response] = []

    def post() -> None:
        with httpx.Client(base_url=server.http_url, timeout=30) as client:
            barrier.wait()
            results.append(create(client, user, HEARTBEAT, **{"Idempotency-Key": "race"}))

    threads = [threading.Thread(target=post) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {r.status_code for r in results} == {201}
    assert len({r.json()["id"] for r in results}) == 1


def test_a_bad_idempotency_key_is_422(http: httpx.Client, user: dict[str, str]) -> None:
    response = create(http, user, HEARTBEAT, **{"Idempotency-Key": "has space"})
    assert response.status_code == 422
    assert "Idempotency-Key" in error_fields(response)


# --- documents ----------------------------------------------------------------------------------


def test_openapi_and_interactive_docs(http: httpx.Client) -> None:
    spec = http.get("/openapi.json").json()
    assert {"/workflows", "/workflows/{workflow_id}", "/auth/login"} <= set(spec["paths"])
    assert http.get("/docs").status_code == 200
    assert json.dumps(spec)  # serialisable


# --- errors that tell the truth -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("DELETE", "/workflows", {"GET", "POST"}),
        ("PATCH", "/workflows/00000000-0000-0000-0000-000000000000", {"GET", "PUT", "DELETE"}),
        ("GET", "/workflows/00000000-0000-0000-0000-000000000000/terminate", {"POST"}),
        ("POST", "/openapi.json", {"GET", "HEAD"}),
    ],
)
def test_a_405_lists_every_method_of_the_path_in_allow(
    http: httpx.Client, user: dict[str, str], method: str, path: str, allowed: set[str]
) -> None:
    response = http.request(method, path, headers=user)
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"
    assert set(response.headers["Allow"].split(", ")) == allowed


def _chunks(body: bytes, size: int = 1024) -> Iterator[bytes]:
    # A generator makes httpx send `Transfer-Encoding: chunked`, with no Content-Length.
    for start in range(0, len(body), size):
        yield body[start : start + size]


def test_a_chunked_body_over_the_limit_is_413(
    http: httpx.Client, user: dict[str, str], server: RunningServer
) -> None:
    big = json.dumps(
        _container(args=["x" * 1000] * (server.settings.max_request_bytes // 1000 + 2))
    )
    assert len(big) > server.settings.max_request_bytes
    response = http.post(
        "/workflows",
        content=_chunks(big.encode()),
        headers={**user, "Content-Type": "application/json"},
    )
    assert response.request.headers.get("Transfer-Encoding") == "chunked"
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


def test_a_chunked_body_under_the_limit_is_read_whole(
    http: httpx.Client, user: dict[str, str]
) -> None:
    body = json.dumps({**HEARTBEAT, "name": "n" * 200}).encode()
    response = http.post(
        "/workflows",
        content=_chunks(body, size=16),
        headers={**user, "Content-Type": "application/json"},
    )
    assert response.status_code == 201, response.text
    assert response.json()["name"] == "n" * 200


@pytest.mark.parametrize("content_type", [None, "application/x-www-form-urlencoded", "text/plain"])
def test_a_body_not_sent_as_json_is_415_naming_the_header(
    http: httpx.Client, user: dict[str, str], content_type: str | None
) -> None:
    # What `curl -d '{...}'` sends: JSON, but labelled as a form (or not labelled at all).
    headers = {**user, **({"Content-Type": content_type} if content_type else {})}
    response = http.post("/workflows", content=json.dumps(HEARTBEAT).encode(), headers=headers)
    assert response.status_code == 415
    error = response.json()["error"]
    assert error["code"] == "unsupported_media_type"
    assert "Content-Type: application/json" in error["message"]
    [detail] = error["details"]
    assert detail["field"] == "body"
    assert "Content-Type: application/json" in detail["message"]


def test_a_json_body_that_is_not_an_object_is_422(http: httpx.Client, user: dict[str, str]) -> None:
    response = http.post("/workflows", json=[HEARTBEAT], headers=user)
    assert response.status_code == 422
    assert response.json()["error"]["details"] == [
        {"field": "body", "message": "must be a JSON object"}
    ]


@pytest.mark.parametrize("kind", ["CONTAINER", "HEARTBEAT", None])
def test_an_update_says_the_kind_cannot_change(
    http: httpx.Client, user: dict[str, str], kind: str | None
) -> None:
    workflow = create(http, user).json()
    response = http.put(
        f"/workflows/{workflow['id']}", json={"kind": kind, "name": "renamed"}, headers=user
    )
    assert response.status_code == 422
    [detail] = response.json()["error"]["details"]
    assert detail["field"] == "kind"
    assert detail["message"].startswith("cannot change")
    assert http.get(f"/workflows/{workflow['id']}", headers=user).json()["name"] == "ping"


def test_canceled_is_not_a_build_status(http: httpx.Client, user: dict[str, str]) -> None:
    # Nothing sets it: a filter on it could only ever return nothing.
    response = http.get("/workflows", params={"build_status": "CANCELED"}, headers=user)
    assert response.status_code == 422
    assert "build_status" in error_fields(response)
    spec = http.get("/openapi.json").json()
    assert spec["components"]["schemas"]["BuildStatus"]["enum"] == [
        "QUEUED",
        "STARTED",
        "COMPLETED",
        "FAILED",
    ]
