"""Secret values (CONTAINER env, HEARTBEAT headers) are write-only and encrypted at rest.

Through the real server (HTTP and gRPC), the CLI, the `chronoverse migrate` step that encrypts
values stored before encryption, and key rotation; the table is read directly to check what is
stored. Endpoints are `localhost` names: no worker runs here, and a name is checked at run time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import grpc
import httpx
import psycopg
import pytest
from click.testing import CliRunner, Result
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from chronoverse.cli import cli
from chronoverse.domain import WorkflowKind
from chronoverse.secret_store import seal_stored
from chronoverse.secrets import MASK, SecretBox, generate_key, is_sealed, open_payload
from chronoverse.v1 import workflows_pb2, workflows_pb2_grpc
from tests.integration.conftest import RunningServer, free_port
from tests.integration.test_api_grpc import Metadata, login

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "tok-" + uuid.uuid4().hex  # unique, so a search for it finds only this test's copies
BEARER = "Bearer " + uuid.uuid4().hex
MODE = "mode-" + uuid.uuid4().hex
CONTAINER = {
    "name": "with-env",
    "kind": "CONTAINER",
    "interval": 60,
    "payload": {"image": "local/busybox:latest", "env": {"API_TOKEN": TOKEN, "MODE": MODE}},
}
HEARTBEAT = {
    "name": "with-headers",
    "kind": "HEARTBEAT",
    "interval": 60,
    "payload": {"endpoint": "http://localhost:9/health", "headers": {"Authorization": BEARER}},
}
PLAIN = (TOKEN, BEARER, MODE)


def assert_masked(text: str) -> None:
    for value in PLAIN:
        assert value not in text


def stored_payload(database_url: str, workflow_id: str) -> tuple[str, dict[str, Any], int]:
    """The payload as Postgres holds it (text and JSON), and the generation."""
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        row = conn.execute(
            "SELECT payload::text AS text, payload, generation FROM workflows WHERE id = %s",
            (workflow_id,),
        ).fetchone()
    assert row is not None
    return row["text"], row["payload"], row["generation"]


def box_of(server: RunningServer) -> SecretBox:
    return SecretBox.from_settings(server.settings)


# --- HTTP ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field", "plain"),
    [
        (CONTAINER, "env", {"API_TOKEN": TOKEN, "MODE": MODE}),
        (HEARTBEAT, "headers", {"Authorization": BEARER}),
    ],
    ids=["container-env", "heartbeat-headers"],
)
def test_http_responses_mask_values_and_the_table_holds_them_encrypted(
    server: RunningServer,
    http: httpx.Client,
    user: dict[str, str],
    body: dict[str, Any],
    field: str,
    plain: dict[str, str],
) -> None:
    key = {"Idempotency-Key": uuid.uuid4().hex}
    created = http.post("/workflows", json=body, headers={**user, **key})
    assert created.status_code == 201, created.text
    assert created.json()["payload"][field] == dict.fromkeys(plain, MASK)
    workflow_id = created.json()["id"]

    replayed = http.post("/workflows", json=body, headers={**user, **key})
    assert replayed.headers.get("Idempotent-Replayed") == "true"
    responses = [
        created,
        replayed,
        http.get(f"/workflows/{workflow_id}", headers=user),
        http.get("/workflows", headers=user),
        http.put(f"/workflows/{workflow_id}", json={"name": "renamed"}, headers=user),
        http.post(f"/workflows/{workflow_id}/terminate", headers=user),
    ]
    for response in responses:
        assert response.status_code in {200, 201}, response.text
        assert_masked(response.text)

    text, payload, _ = stored_payload(server.database_url, workflow_id)
    assert_masked(text)
    assert all(is_sealed(v) for v in payload[field].values())
    assert open_payload(box_of(server), WorkflowKind(body["kind"]), payload)[field] == plain
    with psycopg.connect(server.database_url) as conn:
        saved = conn.execute("SELECT response_body::text FROM idempotency_keys").fetchall()
    assert saved
    for (response_body,) in saved:
        assert_masked(response_body)


def test_an_update_with_the_mask_or_the_same_value_keeps_it_and_the_generation(
    server: RunningServer, http: httpx.Client, user: dict[str, str]
) -> None:
    created = http.post("/workflows", json=CONTAINER, headers=user).json()
    workflow_id = created["id"]
    _, before, generation = stored_payload(server.database_url, workflow_id)
    assert generation == created["generation"] == 1

    for env in ({"API_TOKEN": MASK, "MODE": MASK}, {"API_TOKEN": TOKEN, "MODE": MASK}):
        # What a client reads back is what it can send back.
        payload = {**CONTAINER["payload"], "env": env}  # type: ignore[dict-item]
        updated = http.put(f"/workflows/{workflow_id}", json={"payload": payload}, headers=user)
        assert updated.status_code == 200, updated.text
        assert updated.json()["generation"] == 1
        assert updated.json()["build_status"] == created["build_status"]
        _, after, generation = stored_payload(server.database_url, workflow_id)
        assert (after, generation) == (before, 1)  # not even new ciphertexts

    payload = {**CONTAINER["payload"], "env": {"API_TOKEN": "rotated-token", "MODE": MASK}}  # type: ignore[dict-item]
    updated = http.put(f"/workflows/{workflow_id}", json={"payload": payload}, headers=user)
    assert updated.status_code == 200, updated.text
    assert updated.json()["generation"] == 2
    assert updated.json()["payload"]["env"] == {"API_TOKEN": MASK, "MODE": MASK}
    text, after, generation = stored_payload(server.database_url, workflow_id)
    assert "rotated-token" not in text
    assert generation == 2
    assert open_payload(box_of(server), WorkflowKind.CONTAINER, after)["env"] == {
        "API_TOKEN": "rotated-token",
        "MODE": MODE,
    }

    # Dropping a key drops its value; the mask for a key that has no value is refused.
    payload = {**CONTAINER["payload"], "env": {"MODE": MASK, "NEW": MASK}}  # type: ignore[dict-item]
    refused = http.put(f"/workflows/{workflow_id}", json={"payload": payload}, headers=user)
    assert refused.status_code == 422
    [detail] = refused.json()["error"]["details"]
    assert detail["field"] == "payload.env.NEW"
    assert "send the value" in detail["message"]


def test_creating_with_the_mask_is_refused(http: httpx.Client, user: dict[str, str]) -> None:
    body = {**HEARTBEAT, "payload": {**HEARTBEAT["payload"], "headers": {"X-Key": MASK}}}  # type: ignore[dict-item]
    refused = http.post("/workflows", json=body, headers=user)
    assert refused.status_code == 422
    assert [d["field"] for d in refused.json()["error"]["details"]] == ["payload.headers.X-Key"]


def test_a_value_sealed_with_another_key_is_a_409_not_a_500(
    server: RunningServer, http: httpx.Client, user: dict[str, str]
) -> None:
    workflow_id = http.post("/workflows", json=HEARTBEAT, headers=user).json()["id"]
    # As if the key it was sealed with had been dropped from CHRONOVERSE_SECRET_KEYS.
    other = SecretBox([generate_key()])
    stored = {**HEARTBEAT["payload"], "headers": {"Authorization": other.seal(BEARER)}}  # type: ignore[dict-item]
    with psycopg.connect(server.database_url) as conn:
        conn.execute(
            "UPDATE workflows SET payload = %s WHERE id = %s", (Jsonb(stored), workflow_id)
        )
    payload = {**HEARTBEAT["payload"], "headers": {"Authorization": MASK}}  # type: ignore[dict-item]
    refused = http.put(f"/workflows/{workflow_id}", json={"payload": payload}, headers=user)
    assert refused.status_code == 409, refused.text
    error = refused.json()["error"]
    assert error["code"] == "secret_unreadable"
    assert "cannot be decrypted with the configured keys" in error["message"]
    assert "chronoverse migrate" in error["message"]
    assert "enc:v1:" not in refused.text
    assert_masked(refused.text)
    # Reading still works: responses never open the values.
    shown = http.get(f"/workflows/{workflow_id}", headers=user)
    assert shown.status_code == 200
    assert shown.json()["payload"]["headers"] == {"Authorization": MASK}


# --- gRPC ---------------------------------------------------------------------------------------


def test_grpc_responses_mask_values(server: RunningServer, grpc_channel: grpc.Channel) -> None:
    auth: Metadata = login(grpc_channel)
    stub = workflows_pb2_grpc.WorkflowServiceStub(grpc_channel)
    request = workflows_pb2.CreateWorkflowRequest(
        name="grpc-env",
        kind="CONTAINER",
        payload_json=json.dumps(CONTAINER["payload"]),
        interval=60,
    )
    key = (("idempotency-key", uuid.uuid4().hex),)
    created = stub.CreateWorkflow(request, metadata=auth + key)
    replayed = stub.CreateWorkflow(request, metadata=auth + key)
    assert replayed == created
    assert json.loads(created.payload_json)["env"] == {"API_TOKEN": MASK, "MODE": MASK}
    keep = json.dumps({**CONTAINER["payload"], "env": {"API_TOKEN": MASK, "MODE": MASK}})  # type: ignore[dict-item]
    messages = [
        created,
        stub.GetWorkflow(workflows_pb2.GetWorkflowRequest(id=created.id), metadata=auth),
        stub.ListWorkflows(workflows_pb2.ListWorkflowsRequest(), metadata=auth),
        stub.UpdateWorkflow(
            workflows_pb2.UpdateWorkflowRequest(id=created.id, payload_json=keep), metadata=auth
        ),
    ]
    for message in messages:
        assert_masked(str(message))
    assert messages[-1].generation == 1
    text, payload, _ = stored_payload(server.database_url, created.id)
    assert_masked(text)
    assert (
        open_payload(box_of(server), WorkflowKind.CONTAINER, payload)["env"]["API_TOKEN"] == TOKEN
    )


def test_grpc_maps_an_unreadable_secret_to_failed_precondition(
    server: RunningServer, grpc_channel: grpc.Channel
) -> None:
    auth: Metadata = login(grpc_channel)
    stub = workflows_pb2_grpc.WorkflowServiceStub(grpc_channel)
    created = stub.CreateWorkflow(
        workflows_pb2.CreateWorkflowRequest(
            name="grpc-other-key",
            kind="HEARTBEAT",
            payload_json=json.dumps(HEARTBEAT["payload"]),
            interval=60,
        ),
        metadata=auth,
    )
    other = SecretBox([generate_key()])
    stored = {**HEARTBEAT["payload"], "headers": {"Authorization": other.seal(BEARER)}}  # type: ignore[dict-item]
    with psycopg.connect(server.database_url) as conn:
        conn.execute("UPDATE workflows SET payload = %s WHERE id = %s", (Jsonb(stored), created.id))
    keep = json.dumps({**HEARTBEAT["payload"], "headers": {"Authorization": MASK}})  # type: ignore[dict-item]
    with pytest.raises(grpc.RpcError) as info:
        stub.UpdateWorkflow(
            workflows_pb2.UpdateWorkflowRequest(id=created.id, payload_json=keep), metadata=auth
        )
    assert info.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "cannot be decrypted with the configured keys" in (info.value.details() or "")


# --- CLI ----------------------------------------------------------------------------------------


def invoke(env: Mapping[str, str | None], *args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), env=dict(env), input=input, catch_exceptions=False)


def test_the_cli_shows_masked_values(
    server: RunningServer, environ: Mapping[str, str], tmp_path: Path
) -> None:
    env = {
        **environ,
        "CHRONOVERSE_SERVER_URL": server.http_url,
        "CHRONOVERSE_CONFIG": str(tmp_path / "config.json"),
        "CHRONOVERSE_DATABASE_URL": server.database_url,
    }
    email = f"cli-{uuid.uuid4().hex[:8]}@example.com"
    assert invoke(env, "register", "--email", email, "--password", "correct horse").exit_code == 0
    assert invoke(env, "login", "--email", email, input="correct horse\n").exit_code == 0
    created = invoke(
        env,
        "workflows",
        "create",
        "--name",
        "cli-env",
        "--kind",
        "CONTAINER",
        "--interval",
        "60",
        "--payload",
        json.dumps(CONTAINER["payload"]),
        "--json",
    )
    assert created.exit_code == 0, created.output
    workflow_id = json.loads(created.output)["id"]
    for output in (
        created.output,
        invoke(env, "workflows", "get", workflow_id).output,
        invoke(env, "workflows", "get", workflow_id, "--json").output,
        invoke(env, "workflows", "list", "--json").output,
    ):
        assert_masked(output)
        assert "API_TOKEN" in output


def test_generate_key_prints_a_usable_key(environ: Mapping[str, str]) -> None:
    result = invoke(environ, "secrets", "generate-key")
    assert result.exit_code == 0
    box = SecretBox([result.output.strip()])
    assert box.open(box.seal("x")) == "x"


# --- the migration of stored values, and rotation ---------------------------------------------


def insert_plain_workflows(database_url: str) -> dict[str, str]:
    """Rows as a Chronoverse before encryption stored them; returns kind -> workflow id."""
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        user = conn.execute(
            "INSERT INTO users (email, password_hash) VALUES (%s, 'x') RETURNING id",
            (f"old-{uuid.uuid4().hex[:8]}@example.com",),
        ).fetchone()
        assert user is not None
        ids = {}
        for body in (CONTAINER, HEARTBEAT):
            row = conn.execute(
                "INSERT INTO workflows (user_id, name, kind, payload, interval_minutes) "
                "VALUES (%s, %s, %s, %s, 60) RETURNING id",
                (user["id"], body["name"], body["kind"], Jsonb(body["payload"])),
            ).fetchone()
            assert row is not None
            ids[str(body["kind"])] = str(row["id"])
        response = {"id": ids["CONTAINER"], "kind": "CONTAINER", "payload": CONTAINER["payload"]}
        conn.execute(
            "INSERT INTO idempotency_keys (user_id, key, fingerprint, status_code, response_body, "
            "expires_at) VALUES (%s, 'old', '\\x00', 201, %s, now() + interval '1 day')",
            (user["id"], Jsonb(response)),
        )
    return ids


def table_text(database_url: str) -> str:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT payload::text FROM workflows UNION ALL "
            "SELECT response_body::text FROM idempotency_keys"
        ).fetchall()
    return "\n".join(text for (text,) in rows)


def test_the_migration_step_encrypts_stored_values_once(database_url: str) -> None:
    ids = insert_plain_workflows(database_url)
    box = SecretBox([generate_key()])

    report = seal_stored(database_url, box, batch_size=1)  # several batches
    assert (report.workflows, report.responses) == (2, 1)
    assert_masked(table_text(database_url))
    for kind, field, plain in (
        ("CONTAINER", "env", CONTAINER["payload"]["env"]),  # type: ignore[index]
        ("HEARTBEAT", "headers", HEARTBEAT["payload"]["headers"]),  # type: ignore[index]
    ):
        _, payload, generation = stored_payload(database_url, ids[kind])
        assert generation == 1
        assert open_payload(box, WorkflowKind(kind), payload)[field] == plain

    before = table_text(database_url)
    again = seal_stored(database_url, box)
    assert (again.workflows, again.responses) == (0, 0)
    assert table_text(database_url) == before


def migrate_env(
    environ: Mapping[str, str], database_url: str, keys: str | None
) -> dict[str, str | None]:
    """The CLI's environment; ``keys=None`` unsets the key even where the process has one
    (`make test` exports .run/env)."""
    env: dict[str, str | None] = dict(environ)
    env["CHRONOVERSE_DATABASE_URL"] = database_url
    env["CHRONOVERSE_SECRET_KEYS"] = keys
    return env


def test_chronoverse_migrate_needs_a_key_only_when_there_is_something_to_encrypt(
    environ: Mapping[str, str], database_url: str
) -> None:
    keyless = migrate_env(environ, database_url, None)
    assert invoke(keyless, "migrate").output.strip() == "database is up to date"

    insert_plain_workflows(database_url)
    refused = CliRunner().invoke(cli, ["migrate"], env=keyless)
    assert refused.exit_code != 0
    assert "CHRONOVERSE_SECRET_KEYS" in refused.output
    assert "chronoverse secrets generate-key" in refused.output

    keyed = migrate_env(environ, database_url, generate_key())
    done = invoke(keyed, "migrate")
    assert done.exit_code == 0, done.output
    # The refused run had masked the saved response already: that needs no key.
    assert done.output == "encrypted the secret values of 2 workflows\n"
    assert_masked(table_text(database_url))
    assert invoke(keyed, "migrate").output.strip() == "database is up to date"
    assert invoke(keyless, "migrate").output.strip() == "database is up to date"


def test_rotation_moves_every_value_to_the_first_key(
    environ: Mapping[str, str], database_url: str
) -> None:
    ids = insert_plain_workflows(database_url)
    old, new = generate_key(), generate_key()
    assert invoke(migrate_env(environ, database_url, old), "migrate").exit_code == 0

    rotated = invoke(migrate_env(environ, database_url, f"{new},{old}"), "secrets", "rotate")
    assert rotated.exit_code == 0, rotated.output
    assert "2 workflows" in rotated.output
    _, payload, generation = stored_payload(database_url, ids["CONTAINER"])
    assert generation == 1
    assert open_payload(SecretBox([new]), WorkflowKind.CONTAINER, payload)["env"]["API_TOKEN"] == (
        TOKEN
    )

    refused = CliRunner().invoke(
        cli, ["secrets", "rotate"], env=migrate_env(environ, database_url, None)
    )
    assert refused.exit_code != 0
    assert "CHRONOVERSE_SECRET_KEYS" in refused.output


# --- the server needs a key -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "module", ["services.server", "services.workflow_worker", "services.execution_worker"]
)
def test_a_service_that_needs_the_key_refuses_to_start_without_it(
    environ: Mapping[str, str], module: str
) -> None:
    env = {**os.environ, **environ}
    env |= {
        "CHRONOVERSE_SECRET_KEYS": "",
        "CHRONOVERSE_HTTP_HOST": "127.0.0.1",
        "CHRONOVERSE_HTTP_PORT": str(free_port()),
        "CHRONOVERSE_GRPC_HOST": "127.0.0.1",
        "CHRONOVERSE_GRPC_PORT": str(free_port()),
        "CHRONOVERSE_HEALTH_PORT": str(free_port()),
    }
    result = subprocess.run(
        [sys.executable, "-m", module],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "CHRONOVERSE_SECRET_KEYS" in result.stderr
    assert "generate-key" in result.stderr
