"""The `chronoverse` CLI against a real server and database."""

from __future__ import annotations

import json
import stat
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from click.testing import CliRunner, Result

from chronoverse.cli import cli
from tests.integration.conftest import RunningServer, free_port

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

    def __call__(
        self,
        *args: str,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
        ok: bool = True,
    ) -> Result:
        result = CliRunner().invoke(
            cli, list(args), env={**self.env, **(env or {})}, input=input, catch_exceptions=False
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
        "SCHEDULE",
        "STATE",
        "BUILD",
        "FAILURES",
        "CREATED",
    ]
    assert workflow_id in table[1] and "hello" in table[1]
    assert "every 5 min  active" in table[1]

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


def test_after_logout_the_cli_is_not_logged_in(run: Cli, logged_in: str) -> None:
    run("logout")
    saved = json.loads(Path(run.env["CHRONOVERSE_CONFIG"]).read_text())
    assert "token" not in saved and saved["server_url"] == run.env["CHRONOVERSE_SERVER_URL"]
    result = run("workflows", "list", ok=False)
    assert result.exit_code == 1
    assert "not logged in" in result.output
    # A second logout has no token to revoke either.
    assert "not logged in" in run("logout", ok=False).output


def test_logout_with_another_token_keeps_the_saved_one(run: Cli, logged_in: str) -> None:
    saved = json.loads(Path(run.env["CHRONOVERSE_CONFIG"]).read_text())["token"]
    other = run("login", "--email", logged_in, input="correct horse\n")
    assert other.exit_code == 0
    other_token = json.loads(Path(run.env["CHRONOVERSE_CONFIG"]).read_text())["token"]
    assert other_token != saved
    # Logging out a token given on the command line revokes it, and leaves the file alone.
    run("--token", saved, "logout")
    assert json.loads(Path(run.env["CHRONOVERSE_CONFIG"]).read_text())["token"] == other_token
    run("workflows", "list")


def test_an_expired_or_revoked_saved_token_is_still_forgotten(run: Cli, logged_in: str) -> None:
    token = json.loads(Path(run.env["CHRONOVERSE_CONFIG"]).read_text())["token"]
    revoked = httpx.post(
        f"{run.env['CHRONOVERSE_SERVER_URL']}/auth/logout",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert revoked.status_code == 204, revoked.text
    assert "logged out" in run("logout").output
    assert "not logged in" in run("workflows", "list", ok=False).output


def test_users_create_prints_a_working_token(run: Cli) -> None:
    email = f"admin-{uuid.uuid4().hex[:8]}@example.com"
    result = run("users", "create", "--email", email, input="long password\nlong password\n")
    # The prompts go to stderr: stdout holds only the result.
    assert "Password" in result.stderr and "Password" not in result.stdout
    token = result.stdout.strip().rsplit(" ", 1)[-1]
    assert token.startswith("cv_")
    listed = run("--token", token, "workflows", "list", "--json")
    assert json.loads(listed.output)["workflows"] == []


def test_users_create_json(run: Cli) -> None:
    email = f"admin-{uuid.uuid4().hex[:8]}@example.com"
    result = run("users", "create", "--email", email, "--password", "long password", "--json")
    created = json.loads(result.stdout)
    assert sorted(created) == ["email", "expires_at", "id", "token"]
    assert created["email"] == email
    assert created["expires_at"] > time.strftime("%Y-%m-%d", time.gmtime(time.time() + 29 * 86400))
    listed = run("--token", created["token"], "workflows", "list", "--json")
    assert json.loads(listed.stdout)["workflows"] == []

    again = run("users", "create", "--email", email, "--password", "long password", ok=False)
    assert again.exit_code == 1
    # The same prefix as every other command's errors (click's), no traceback.
    assert again.stderr == f"Error: {email} is already registered\n"
    again = run(
        "users", "create", "--email", email, "--password", "long password", "--json", ok=False
    )
    assert again.exit_code == 1 and again.stderr == ""
    assert json.loads(again.stdout)["error"]["code"] == "email_taken"

    bad = run("users", "create", "--email", "nobody", "--password", "short", "--json", ok=False)
    assert json.loads(bad.stdout)["error"] == {
        "code": "invalid_fields",
        "message": "invalid fields",
        "details": [
            {"field": "email", "message": "must be an email address"},
            {"field": "password", "message": "must be 8 to 1024 characters"},
        ],
    }


def test_an_invalid_token_lifetime_is_one_line_naming_the_setting(
    run: Cli, server: RunningServer
) -> None:
    email = f"admin-{uuid.uuid4().hex[:8]}@example.com"
    for days in ("0", "-1", "36501", "x"):
        result = run(
            "users",
            "create",
            "--email",
            email,
            "--password",
            "long password",
            env={"CHRONOVERSE_TOKEN_TTL_DAYS": days},
            ok=False,
        )
        assert result.exit_code == 1, result.output
        assert result.stdout == ""
        assert result.stderr.startswith("Error: CHRONOVERSE_TOKEN_TTL_DAYS: ")
        assert result.stderr.count("\n") == 1
    with psycopg.connect(server.database_url) as conn:
        assert conn.execute("SELECT 1 FROM users WHERE email = %s", (email,)).fetchone() is None


def test_an_unreachable_database_is_one_line(run: Cli) -> None:
    nowhere = {"CHRONOVERSE_DATABASE_URL": f"postgresql://u:p@127.0.0.1:{free_port()}/db"}
    create = ("users", "create", "--email", "a@example.com", "--password", "long password")
    for args in (("migrate",), ("secrets", "rotate"), create):
        result = run(*args, env=nowhere, ok=False)
        assert result.exit_code == 1
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: database: connection"), lines
    shown = run(*create, "--json", env=nowhere, ok=False)
    assert json.loads(shown.stdout)["error"]["code"] == "database_error"


# --- --json: JSON on stdout on every path, errors included ---------------------------------------


def error_of(result: Result) -> dict[str, Any]:
    """The JSON error a failed --json command printed: on stdout, with nothing on stderr."""
    assert result.exit_code != 0, result.output
    assert result.stderr == ""
    error = json.loads(result.stdout)["error"]
    assert sorted(error) == ["code", "details", "message"]
    return dict(error)


def test_json_errors_from_the_api(run: Cli, logged_in: str) -> None:
    missing = str(uuid.uuid4())
    assert error_of(run("workflows", "get", missing, "--json", ok=False)) == {
        "code": "not_found",
        "message": f"workflow {missing} not found",
        "details": [],
    }
    invalid = error_of(
        run(
            "workflows",
            "create",
            "--name",
            "x",
            "--kind",
            "HEARTBEAT",
            "--interval",
            "0",
            "--payload",
            '{"endpoint": "http://127.0.0.1:1/"}',
            "--json",
            ok=False,
        )
    )
    assert invalid["code"] == "invalid_fields"
    assert [d["field"] for d in invalid["details"]] == ["interval"]

    created = heartbeat(run, "unbuilt")
    # The 409 that a trigger right after create meets (without `workflows wait`).
    conflict = error_of(run("trigger", created["id"], "--json", ok=False))
    assert conflict["code"] == "workflow_not_built"


def test_json_errors_before_the_api(run: Cli, logged_in: str) -> None:
    assert (
        error_of(
            run(
                "workflows",
                "list",
                "--json",
                env={"CHRONOVERSE_CONFIG": "/nonexistent/c.json"},
                ok=False,
            )
        )["code"]
        == "not_logged_in"
    )
    unreachable = run(
        "--server", f"http://127.0.0.1:{free_port()}", "volumes", "list", "--json", ok=False
    )
    assert error_of(unreachable)["code"] == "unreachable"
    # Usage errors too, with click's exit status 2.
    for args in (
        ("workflows", "list", "--limit", "0", "--json"),
        ("workflows", "list", "--no-such-option", "--json"),
        ("workflows", "no-such-command", "--json"),
        ("workflows", "create", "--name", "x", "--json"),
        ("workflows", "update", str(uuid.uuid4()), "--json"),
    ):
        result = run(*args, ok=False)
        assert result.exit_code == 2, (args, result.output)
        assert error_of(result)["code"] == "usage"
    # Without --json, errors stay text on stderr.
    plain = run("workflows", "list", "--limit", "0", ok=False)
    assert plain.stdout == "" and "Usage:" in plain.stderr


# --- waiting for a build --------------------------------------------------------------------------


def heartbeat(run: Cli, name: str, *extra: str) -> dict[str, Any]:
    payload = json.dumps({"endpoint": "http://127.0.0.1:1/"})
    result = run(
        "workflows",
        "create",
        "--name",
        name,
        "--kind",
        "HEARTBEAT",
        "--interval",
        "5",
        "--payload",
        payload,
        "--json",
        *extra,
    )
    return dict(json.loads(result.stdout))


@pytest.fixture
def builder(server: RunningServer) -> Iterator[Builder]:
    builder = Builder(server.database_url)
    yield builder
    builder.join()


class Builder:
    """Finishes a build the way the workflow worker would, a moment after a workflow appears:
    these tests run the server alone, so every build stays QUEUED until this writes to its row."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self.threads: list[threading.Thread] = []

    def finish_later(self, name: str, status: str, error: str | None = None) -> None:
        def finish() -> None:
            time.sleep(0.6)  # long enough for `wait` to see QUEUED and poll again
            deadline = time.monotonic() + 20
            with psycopg.connect(self.database_url, autocommit=True) as conn:
                while time.monotonic() < deadline:
                    done = conn.execute(
                        "UPDATE workflows SET build_status = %s, build_error = %s "
                        "WHERE name = %s AND build_status = 'QUEUED' RETURNING id",
                        (status, error, name),
                    ).fetchone()
                    if done is not None:
                        return
                    time.sleep(0.05)

        thread = threading.Thread(target=finish, daemon=True)
        thread.start()
        self.threads.append(thread)

    def join(self) -> None:
        for thread in self.threads:
            thread.join(timeout=30)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_wait_returns_once_the_build_completes(run: Cli, logged_in: str, builder: Builder) -> None:
    name = unique("wait-ok")
    created = heartbeat(run, name)
    # The server alone builds nothing: a new workflow's build waits for the workflow worker.
    assert created["build_status"] == "QUEUED"
    builder.finish_later(name, "COMPLETED")
    started = time.monotonic()
    built = json.loads(run("workflows", "wait", created["id"], "--json").stdout)
    assert time.monotonic() - started >= 0.5
    assert built["id"] == created["id"] and built["build_status"] == "COMPLETED"
    # Now a trigger is not refused.
    assert json.loads(run("trigger", created["id"], "--json").stdout)["status"] == "PENDING"
    # Waiting on a built workflow returns at once, in text too.
    assert run("workflows", "wait", created["id"]).stdout == (
        f"workflow {created['id']} is built (COMPLETED)\n"
    )


def test_create_wait(run: Cli, logged_in: str, builder: Builder) -> None:
    name = unique("create-wait")
    builder.finish_later(name, "COMPLETED")
    built = heartbeat(run, name, "--wait")
    assert built["build_status"] == "COMPLETED"
    json.loads(run("trigger", built["id"], "--json").stdout)

    name = unique("create-wait-text")
    builder.finish_later(name, "COMPLETED")
    shown = run(
        "workflows",
        "create",
        "--name",
        name,
        "--kind",
        "HEARTBEAT",
        "--interval",
        "5",
        "--payload",
        '{"endpoint": "http://127.0.0.1:1/"}',
        "--wait",
    ).stdout.splitlines()
    assert shown[0].startswith("created workflow ") and shown[0].endswith("build QUEUED)")
    assert shown[1].endswith("is built (COMPLETED)")


def test_wait_fails_with_the_build_error(run: Cli, logged_in: str, builder: Builder) -> None:
    name = unique("wait-failed")
    created = heartbeat(run, name)
    builder.finish_later(name, "FAILED", "pull access denied for nope")
    result = run("workflows", "wait", created["id"], ok=False)
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: the build of workflow {created['id']} FAILED: pull access denied for nope\n"
    )
    shown = run("workflows", "wait", created["id"], "--json", ok=False)
    assert shown.exit_code == 1 and shown.stderr == ""
    body = json.loads(shown.stdout)
    assert body["error"]["code"] == "build_failed"
    assert "pull access denied for nope" in body["error"]["message"]
    assert body["workflow"]["build_error"] == "pull access denied for nope"

    name = unique("create-wait-failed")
    builder.finish_later(name, "FAILED", "no command")
    failed = run(
        "workflows",
        "create",
        "--name",
        name,
        "--kind",
        "HEARTBEAT",
        "--interval",
        "5",
        "--payload",
        '{"endpoint": "http://127.0.0.1:1/"}',
        "--wait",
        "--json",
        ok=False,
    )
    assert failed.exit_code == 1
    # The error names the workflow that was created, so a script can clean it up.
    assert json.loads(failed.stdout)["workflow"]["name"] == name


def test_wait_times_out_and_stops_on_termination(run: Cli, logged_in: str) -> None:
    created = heartbeat(run, unique("wait-timeout"))
    started = time.monotonic()
    result = run("workflows", "wait", created["id"], "--timeout", "0.5", "--json", ok=False)
    assert 0.5 <= time.monotonic() - started < 5
    assert error_of_wait(result)["code"] == "timeout"
    assert "still QUEUED after 0.5 seconds" in error_of_wait(result)["message"]

    run("workflows", "terminate", created["id"])
    stopped = run("workflows", "wait", created["id"], "--json", ok=False)
    assert error_of_wait(stopped)["code"] == "workflow_terminated"

    missing = run("workflows", "wait", str(uuid.uuid4()), "--json", ok=False)
    assert error_of_wait(missing)["code"] == "not_found"


def error_of_wait(result: Result) -> dict[str, Any]:
    assert result.exit_code == 1 and result.stderr == "", result.output
    return dict(json.loads(result.stdout)["error"])


# --- schedules: cron in a zone, previews, pause and resume, the fire ledger -----------------------

RIGA = ("--cron", "0 3 * * *", "--timezone", "Europe/Riga")
PING = ("--payload", '{"endpoint": "http://127.0.0.1:1/"}')


def record_of(shown: str) -> dict[str, str]:
    """`workflows get`'s text: one aligned "key  value" line a field, in order."""
    fields = {}
    for line in shown.splitlines():
        key, _, value = line.partition(" ")
        fields[key] = value.strip()
    return fields


def test_a_cron_workflow_in_a_zone(run: Cli, logged_in: str) -> None:
    name = unique("nightly")
    created = run("workflows", "create", "--name", name, "--kind", "HEARTBEAT", *RIGA, *PING).stdout
    assert created.startswith("created workflow ")
    assert "(HEARTBEAT, 0 3 * * * (Europe/Riga), build QUEUED)" in created
    workflow_id = created.split()[2]

    shown = record_of(run("workflows", "get", workflow_id).stdout)
    assert list(shown.items())[:5] == [
        ("id", workflow_id),
        ("name", name),
        ("kind", "HEARTBEAT"),
        ("schedule", "0 3 * * * (Europe/Riga)"),
        ("state", "active"),
    ]
    assert shown["dst"] == '{"gap": "shift", "overlap": "once"}'
    got = json.loads(run("workflows", "get", workflow_id, "--json").stdout)
    assert (got["interval"], got["cron"], got["timezone"]) == (None, "0 3 * * *", "Europe/Riga")
    assert got["dst"] == {"gap": "shift", "overlap": "once"}
    listed = run("workflows", "list", "--name", name).stdout.splitlines()
    assert "0 3 * * * (Europe/Riga)  active" in listed[1]

    # One half of the DST policy changes, the other is kept (the API replaces the whole policy).
    skip = json.loads(run("workflows", "update", workflow_id, "--dst-gap", "skip", "--json").stdout)
    assert skip["dst"] == {"gap": "skip", "overlap": "once"}
    both = run(
        "workflows",
        "update",
        workflow_id,
        "--dst-overlap",
        "TWICE",
        "--catchup",
        "all",
        "--catchup-window",
        "30",
        "--json",
    )
    updated = json.loads(both.stdout)
    assert updated["dst"] == {"gap": "skip", "overlap": "twice"}
    assert (updated["catchup"], updated["catchup_window_minutes"]) == ("all", 30)
    back = json.loads(run("workflows", "update", workflow_id, "--interval", "10", "--json").stdout)
    assert (back["interval"], back["cron"], back["timezone"], back["dst"]) == (
        10,
        None,
        "UTC",
        None,
    )
    assert record_of(run("workflows", "get", workflow_id).stdout)["schedule"] == "every 10 min"


def test_the_server_names_a_bad_schedule_field(run: Cli, logged_in: str) -> None:
    mars = run(
        "workflows",
        "create",
        "--name",
        "x",
        "--kind",
        "HEARTBEAT",
        "--cron",
        "0 3 * * *",
        "--timezone",
        "Mars/Olympus",
        *PING,
        ok=False,
    )
    assert mars.exit_code == 1 and "  timezone: " in mars.stderr
    reboot = run("workflows", "preview", "--cron", "@reboot", "--json", ok=False)
    assert [d["field"] for d in error_of(reboot)["details"]] == ["cron"]
    naive = run(
        "workflows", "preview", "--interval", "5", "--from", "2027-01-01T00:00:00", ok=False
    )
    assert "  from: must have a time zone offset" in naive.stderr
    both = run(
        "workflows",
        "create",
        "--name",
        "x",
        "--kind",
        "HEARTBEAT",
        "--interval",
        "5",
        "--cron",
        "@daily",
        ok=False,
    )
    assert both.exit_code == 2 and "give --interval or --cron, not both" in both.stderr


SPRING = ("--from", "2027-03-27T12:00:00Z", "--count", "3")


def test_preview_across_the_riga_spring_change(run: Cli, logged_in: str) -> None:
    shown = run("workflows", "preview", *RIGA, *SPRING).stdout
    assert shown.splitlines() == [
        "AT (UTC)              LOCAL                      NOTE",
        "2027-03-28T01:00:00Z  2027-03-28T04:00:00+03:00  "
        "dst_shifted: in the spring-forward gap, runs just after it",
        "2027-03-29T00:00:00Z  2027-03-29T03:00:00+03:00",
        "2027-03-30T00:00:00Z  2027-03-30T03:00:00+03:00",
    ]
    skipped = run("workflows", "preview", *RIGA, "--dst-gap", "skip", *SPRING).stdout
    assert [line.split()[0] for line in skipped.splitlines()[1:]] == [
        "2027-03-29T00:00:00Z",
        "2027-03-30T00:00:00Z",
        "2027-03-31T00:00:00Z",
    ]
    as_json = json.loads(run("workflows", "preview", *RIGA, *SPRING, "--json").stdout)
    assert as_json["next"][0] == {
        "at": "2027-03-28T01:00:00Z",
        "local": "2027-03-28T04:00:00+03:00",
        "note": "dst_shifted",
    }


def test_preview_across_the_riga_autumn_change(run: Cli, logged_in: str) -> None:
    autumn = ("--from", "2027-10-30T12:00:00Z", "--count", "3")
    twice = run("workflows", "preview", *RIGA, "--dst-overlap", "twice", *autumn).stdout
    assert twice.splitlines()[1:] == [
        "2027-10-31T00:00:00Z  2027-10-31T03:00:00+03:00",
        "2027-10-31T01:00:00Z  2027-10-31T03:00:00+02:00  "
        "dst_repeated: in the fall-back overlap, its second run",
        "2027-11-01T01:00:00Z  2027-11-01T03:00:00+02:00",
    ]
    once = run("workflows", "preview", *RIGA, *autumn).stdout
    assert [line.split()[0] for line in once.splitlines()[1:]] == [
        "2027-10-31T00:00:00Z",
        "2027-11-01T01:00:00Z",
        "2027-11-02T01:00:00Z",
    ]
    interval = json.loads(
        run(
            "workflows", "preview", "--interval", "90", "--count", "2", *autumn[:2], "--json"
        ).stdout
    )
    assert [r["at"] for r in interval["next"]] == ["2027-10-30T12:00:00Z", "2027-10-30T13:30:00Z"]


def test_schedule_of_a_saved_workflow(run: Cli, logged_in: str) -> None:
    created = heartbeat(run, unique("sched"))
    workflow_id = created["id"]
    run("workflows", "update", workflow_id, *RIGA)
    shown = run("workflows", "schedule", workflow_id, *SPRING).stdout.splitlines()
    assert shown[1] == (
        "2027-03-28T01:00:00Z  2027-03-28T04:00:00+03:00  "
        "dst_shifted: in the spring-forward gap, runs just after it"
    )
    listed = json.loads(run("workflows", "schedule", workflow_id, "--count", "2", "--json").stdout)
    assert len(listed["next"]) == 2
    run("workflows", "terminate", workflow_id)
    assert "no next runs" in run("workflows", "schedule", workflow_id).stdout
    assert json.loads(run("workflows", "schedule", workflow_id, "--json").stdout) == {"next": []}


def test_pause_resume_and_the_fire_ledger(run: Cli, logged_in: str, server: RunningServer) -> None:
    created = heartbeat(run, unique("paused"), "--interval", "1")
    workflow_id = created["id"]
    assert run("workflows", "pause", workflow_id).stdout.startswith(
        f"paused workflow {workflow_id} (since "
    )
    paused = json.loads(run("workflows", "pause", workflow_id, "--json").stdout)
    assert (paused["state"], paused["paused_at"] is not None) == ("paused", True)
    assert record_of(run("workflows", "get", workflow_id).stdout)["state"] == "paused"
    listed = run("workflows", "list", "--name", created["name"]).stdout.splitlines()
    assert "every 1 min  paused" in listed[1]
    with psycopg.connect(server.database_url, autocommit=True) as conn:
        # Built, and three one-minute slots in the past while paused.
        conn.execute(
            "UPDATE workflows SET build_status = 'COMPLETED', "
            "next_run_at = now() - interval '150 seconds' WHERE id = %s",
            (workflow_id,),
        )
    resumed = json.loads(run("workflows", "resume", workflow_id, "--json").stdout)
    assert resumed["state"] == "active" and resumed["paused_at"] is None

    ledger = json.loads(run("workflows", "fires", workflow_id, "--json").stdout)
    assert ledger["next_cursor"] is None
    entries = ledger["fires"]
    # Catch-up latest: the latest paused slot ran on resume, the two before it are PAUSED.
    assert [(e["outcome"], e["slots"]) for e in entries] == [("FIRED", 1), ("PAUSED", 2)]
    job_id = entries[0]["job_id"]
    table = run("workflows", "fires", workflow_id).stdout
    lines = table.splitlines()
    assert lines[0].split() == ["SCHEDULED", "(UTC)", "OUTCOME", "SLOTS", "JOB", "DETAIL"]
    fired, skipped = lines[1].split(), lines[2].split()
    assert fired[1:4] == ["FIRED", "1", job_id]
    # Several slots: their range, first to last.
    assert skipped[1] == ".." and skipped[3:5] == ["PAUSED", "2"]
    assert skipped[0] < skipped[2] < fired[0]

    page = run("workflows", "fires", workflow_id, "--limit", "1")
    assert len(page.stdout.splitlines()) == 2 and page.stderr.startswith("more: --cursor ")
    everything = json.loads(
        run("workflows", "fires", workflow_id, "--limit", "1", "--all", "--json").stdout
    )
    assert [e["outcome"] for e in everything["fires"]] == ["FIRED", "PAUSED"]
    jobs = json.loads(run("jobs", "list", workflow_id, "--json").stdout)["jobs"]
    assert [j["id"] for j in jobs] == [job_id]

    run("workflows", "terminate", workflow_id)
    refused = error_of(run("workflows", "resume", workflow_id, "--json", ok=False))
    assert refused["code"] == "workflow_terminated"
