"""`--json` means JSON on stdout on every path, errors included; admin commands report an invalid
setting in one line that names it. Every case here fails before any network."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from chronoverse.cli import cli
from chronoverse.cli.errors import json_requested

ID = str(uuid.uuid4())
CREATE = ["workflows", "create", "--name", "x", "--kind", "HEARTBEAT"]
WORKFLOW = ["--name", "x", "--kind", "HEARTBEAT", "--interval", "5"]
NEW_USER = ["--email", "ops@example.com", "--password", "long password"]

# Every command that takes --json, with the arguments it needs. The test below checks this list
# against the command tree, so a new --json command must be added here.
Commands = dict[tuple[str, ...], list[str]]
API_COMMANDS: Commands = {
    ("workflows", "create"): WORKFLOW,
    ("workflows", "list"): [],
    ("workflows", "get"): [ID],
    ("workflows", "update"): [ID, "--interval", "10"],
    ("workflows", "wait"): [ID],
    ("workflows", "terminate"): [ID],
    ("workflows", "pause"): [ID],
    ("workflows", "resume"): [ID],
    ("workflows", "schedule"): [ID, "--count", "3", "--from", "2027-03-27T12:00:00Z"],
    ("workflows", "preview"): ["--cron", "0 3 * * *", "--timezone", "Europe/Riga"],
    ("workflows", "fires"): [ID, "--all"],
    ("trigger",): [ID],
    ("jobs", "list"): [ID],
    ("jobs", "get"): [ID, ID],
    ("jobs", "events"): [ID, ID],
    ("volumes", "list"): [],
    ("analytics",): [],
    ("me",): [],
    ("notifications", "list"): [],
    ("notifications", "read"): ["--all"],
    ("webhooks", "add"): ["http://127.0.0.1:9/hook", "--event", "workflow.failing"],
    ("webhooks", "list"): [],
    ("webhooks", "deliveries"): [ID],
}
ADMIN_COMMANDS: Commands = {
    ("topics", "list"): [],
    ("dlq", "list"): ["jobs"],
    ("dlq", "replay"): ["jobs"],
    ("users", "create"): NEW_USER,
}
# Admin commands that read settings, without --json.
ADMIN_TEXT_COMMANDS: Commands = {
    ("migrate",): [],
    ("topics", "create"): [],
    ("secrets", "rotate"): [],
}
SETTINGS_COMMANDS: Commands = {**ADMIN_COMMANDS, **ADMIN_TEXT_COMMANDS}


def commands_with_json(group: click.Group, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from commands_with_json(command, (*path, name))
        elif any(param.name == "as_json" for param in command.params):
            yield (*path, name)


def invoke(args: list[str], tmp_path: Path, **env: str | None) -> Result:
    environ = {
        "CHRONOVERSE_TOKEN": None,
        "CHRONOVERSE_CONFIG": str(tmp_path / "absent.json"),
        "CHRONOVERSE_SERVER_URL": "http://127.0.0.1:9",
        **env,
    }
    return CliRunner().invoke(cli, args, env=environ, catch_exceptions=False)


def json_error(result: Result) -> dict[str, object]:
    assert result.exit_code == 1, result.output
    assert result.stderr == ""
    body = json.loads(result.stdout)
    assert sorted(body["error"]) == ["code", "details", "message"]
    return dict(body["error"])


def test_every_json_command_is_covered() -> None:
    assert sorted(commands_with_json(cli)) == sorted([*API_COMMANDS, *ADMIN_COMMANDS])


@pytest.mark.parametrize("path", sorted(API_COMMANDS), ids=" ".join)
def test_not_logged_in_is_json(path: tuple[str, ...], tmp_path: Path) -> None:
    result = invoke([*path, *API_COMMANDS[path], "--json"], tmp_path)
    error = json_error(result)
    assert error["code"] == "not_logged_in"
    assert str(error["message"]).startswith("not logged in")


@pytest.mark.parametrize("path", sorted(API_COMMANDS), ids=" ".join)
def test_a_usage_error_is_json_with_status_2(path: tuple[str, ...], tmp_path: Path) -> None:
    result = invoke([*path, *API_COMMANDS[path], "--no-such-option", "--json"], tmp_path)
    assert result.exit_code == 2 and result.stderr == ""
    assert json.loads(result.stdout)["error"]["code"] == "usage"


@pytest.mark.parametrize("path", sorted(ADMIN_COMMANDS), ids=" ".join)
def test_an_invalid_setting_is_json(path: tuple[str, ...], tmp_path: Path) -> None:
    result = invoke(
        [*path, *ADMIN_COMMANDS[path], "--json"], tmp_path, CHRONOVERSE_LOG_LEVEL="LOUD"
    )
    error = json_error(result)
    assert error["code"] == "invalid_setting"
    assert error["details"] == [
        {
            "field": "CHRONOVERSE_LOG_LEVEL",
            "message": "Input should be 'DEBUG', 'INFO', 'WARNING' or 'ERROR'",
        }
    ]


@pytest.mark.parametrize("path", sorted({**ADMIN_COMMANDS, **ADMIN_TEXT_COMMANDS}), ids=" ".join)
@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("CHRONOVERSE_TOKEN_TTL_DAYS", "0"),
        ("CHRONOVERSE_KAFKA_TOPIC_PARTITIONS", "0"),
        ("CHRONOVERSE_DATABASE_POOL_MAX_SIZE", "many"),
    ],
)
def test_an_invalid_setting_is_one_line_naming_it(
    path: tuple[str, ...], setting: str, value: str, tmp_path: Path
) -> None:
    result = invoke([*path, *SETTINGS_COMMANDS[path]], tmp_path, **{setting: value})
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith(f"Error: {setting}: ")
    assert result.stderr.count("\n") == 1, result.stderr


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["workflows", "create", "--name", "x", "--kind", "HEARTBEAT"], "give a schedule"),
        ([*CREATE, "--interval", "5", "--cron", "@daily"], "not both"),
        (["workflows", "update", ID, "--interval", "5", "--cron", "@daily"], "not both"),
        (["workflows", "preview"], "give a schedule"),
        (["workflows", "preview", "--interval", "5", "--cron", "@daily"], "not both"),
        (["workflows", "preview", "--cron", "@daily", "--dst-gap", "jump"], "--dst-gap"),
        (["workflows", "schedule", ID, "--count", "0"], "--count"),
    ],
)
def test_a_schedule_usage_error_is_local(args: list[str], says: str, tmp_path: Path) -> None:
    shown = invoke(args, tmp_path)
    assert shown.exit_code == 2 and shown.stdout == ""
    assert says in shown.stderr
    as_json = invoke([*args, "--json"], tmp_path)
    assert as_json.exit_code == 2 and as_json.stderr == ""
    error = json.loads(as_json.stdout)["error"]
    assert error["code"] == "usage" and says in error["message"]


def test_text_errors_stay_on_stderr(tmp_path: Path) -> None:
    result = invoke(["workflows", "get", ID], tmp_path)
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.startswith("Error: not logged in")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["workflows", "list", "--json"], True),
        (["--json"], True),
        (["workflows", "list"], False),
        (["workflows", "create", "--payload", "{}", "--", "--json"], False),
    ],
)
def test_json_requested(args: list[str], expected: bool) -> None:
    assert json_requested(args) is expected
