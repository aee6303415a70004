"""The `chronoverse` CLI against a real server and database."""

from __future__ import annotations

import json
import stat
import uuid
from collections.abc import Mapping
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from chronoverse.cli import cli
from tests.integration.conftest import RunningServer

pytestmark = pytest.mark.integration


class Cli:
    def __init__(self, server: RunningServer, environ: Mapping[str, str], config: Path) -> None:
        self.env = {
            **environ,
            "CHRONOVERSE_SERVER_URL": server.http_url,
            "CHRONOVERSE_CONFIG": str(config),
            "CHRONOVERSE_DATABASE_URL": server.database_url,
        }
        self.env.pop("CHRONOVERSE_TOKEN", None)

    def __call__(self, *args: str, input: str | None = None, ok: bool = True) -> Result:
        result = CliRunner().invoke(
            cli, list(args), env=self.env, input=input, catch_exceptions=False
        )
        if ok:
            assert result.exit_code == 0, result.output
        return result


@pytest.fixture
def run(server: RunningServer, environ: Mapping[str, str], tmp_path: Path) -> Cli:
    return Cli(server, environ, tmp_path / "config.json")


@pytest.fixture
def logged_in(run: Cli) -> str:
    email = f"cli-{uuid.uuid4().hex[:8]}@example.com"
    run("register", "--email", email, "--password", "correct horse")
    result = run("login", "--email", email, input="correct horse\n")
    assert "token saved" in result.output
    return email


def test_login_saves_a_private_config(run: Cli, logged_in: str) -> None:
    config = Path(run.env["CHRONOVERSE_CONFIG"])
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert json.loads(config.read_text())["token"].startswith("cv_")


def test_workflow_lifecycle(run: Cli, logged_in: str) -> None:
    payload = json.dumps({"image": "local/busybox:latest", "command": ["echo", "hi"]})
    created = json.loads(
        run(
            "workflows",
            "create",
            "--name",
            "hello",
            "--kind",
            "container",
            "--interval",
            "5",
            "--payload",
            payload,
            "--json",
        ).output
    )
    assert created["kind"] == "CONTAINER"
    workflow_id = created["id"]

    table = run("workflows", "list").output.splitlines()
    assert table[0].split() == [
        "ID",
        "NAME",
        "KIND",
        "EVERY",
        "BUILD",
        "STATE",
        "FAILURES",
        "CREATED",
    ]
    assert workflow_id in table[1] and "hello" in table[1] and "active" in table[1]

    shown = run("workflows", "get", workflow_id).output
    assert "image" in shown and "state" in shown

    updated = json.loads(
        run("workflows", "update", workflow_id, "--interval", "10", "--json").output
    )
    assert updated["interval"] == 10

    assert "terminated workflow" in run("workflows", "terminate", workflow_id).output
    listed = json.loads(run("workflows", "list", "--terminated", "--json").output)
    assert [w["id"] for w in listed["workflows"]] == [workflow_id]

    assert "deleted" in run("workflows", "delete", workflow_id, "--yes").output
    missing = run("workflows", "get", workflow_id, ok=False)
    assert missing.exit_code == 1
    assert "not found" in missing.output


def test_api_errors_name_the_field(run: Cli, logged_in: str) -> None:
    result = run(
        "workflows", "create", "--name", "x", "--kind", "CONTAINER", "--interval", "0", ok=False
    )
    assert result.exit_code == 1
    assert "interval:" in result.output
    result = run(
        "workflows",
        "create",
        "--name",
        "x",
        "--kind",
        "CONTAINER",
        "--interval",
        "1",
        "--payload",
        '{"image": "BAD"}',
        ok=False,
    )
    assert "payload.image:" in result.output


def test_list_follows_cursors_with_all(run: Cli, logged_in: str) -> None:
    for i in range(3):
        run("workflows", "create", "--name", f"w{i}", "--kind", "HEARTBEAT", "--interval", "1")
    page = json.loads(run("workflows", "list", "--limit", "2", "--json").output)
    assert len(page["workflows"]) == 2 and page["next_cursor"]
    everything = json.loads(run("workflows", "list", "--limit", "2", "--all", "--json").output)
    assert len(everything["workflows"]) == 3 and everything["next_cursor"] is None


def test_not_logged_in_is_a_clear_error(run: Cli) -> None:
    result = run("workflows", "list", ok=False)
    assert result.exit_code != 0
    assert "not logged in" in result.output


def test_logout_revokes(run: Cli, logged_in: str) -> None:
    token = json.loads(Path(run.env["CHRONOVERSE_CONFIG"]).read_text())["token"]
    run("logout")
    result = run("--token", token, "workflows", "list", ok=False)
    assert "revoked" in result.output or "expired" in result.output


def test_users_create_prints_a_working_token(run: Cli) -> None:
    email = f"admin-{uuid.uuid4().hex[:8]}@example.com"
    result = run("users", "create", "--email", email, input="long password\nlong password\n")
    token = result.output.strip().rsplit(" ", 1)[-1]
    assert token.startswith("cv_")
    listed = run("--token", token, "workflows", "list", "--json")
    assert json.loads(listed.output)["workflows"] == []
