"""`chronoverse workflows …`: create, list, get, update, wait for the build, terminate and delete,
over the HTTP API."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from chronoverse.cli.builds import DEFAULT_TIMEOUT_S, wait_for_build
from chronoverse.cli.config import ClientConfig
from chronoverse.cli.output import collect_pages, json_option, print_json, print_record, print_table
from chronoverse.client import Client

LIST_COLUMNS = ("ID", "NAME", "KIND", "EVERY", "BUILD", "STATE", "FAILURES", "CREATED")


def _config(ctx: click.Context) -> ClientConfig:
    config = ctx.find_object(ClientConfig)
    assert config is not None
    return config


def _payload(payload: str | None, payload_file: Path | None) -> Any:
    if payload is not None and payload_file is not None:
        raise click.UsageError("give --payload or --payload-file, not both")
    text = payload_file.read_text() if payload_file is not None else payload
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--payload") from exc


def _state(workflow: dict[str, Any]) -> str:
    return "terminated" if workflow["terminated_at"] else "active"


def _show(workflow: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(workflow)
    else:
        print_record({**workflow, "state": _state(workflow)})


def _built(client: Client, workflow_id: str, timeout_s: float) -> Any:
    return wait_for_build(lambda: client.get_workflow(workflow_id), timeout_s=timeout_s)


wait_options = [
    click.option(
        "--wait",
        is_flag=True,
        help="Then wait until the build is COMPLETED (exit 1 if it FAILED), as `workflows wait` "
        "does, and print the built workflow.",
    ),
    click.option(
        "--wait-timeout",
        type=click.FloatRange(min=0),
        default=DEFAULT_TIMEOUT_S,
        show_default=True,
        metavar="SECONDS",
        help="With --wait: how long to wait.",
    ),
]
payload_options = [
    click.option("--payload", help='The payload as JSON, e.g. \'{"image": "busybox"}\'.'),
    click.option(
        "--payload-file",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="Read the payload JSON from a file.",
    ),
]


F = TypeVar("F", bound=Callable[..., Any])


def _with(options: list[Callable[[F], F]]) -> Callable[[F], F]:
    def apply(function: F) -> F:
        for option in reversed(options):
            function = option(function)
        return function

    return apply


@click.group(help="Create, inspect and change workflows, and wait for their builds.")
def workflows() -> None:
    pass


@workflows.command(
    "create",
    help="Create a workflow. Its jobs run once its build is COMPLETED: within a second or so "
    "for a HEARTBEAT (once the workflow worker has seen it), after the image is pulled and "
    "checked for a CONTAINER. --wait waits for that, so that `trigger` can follow. Example:\n\n"
    "\b\n  chronoverse workflows create --name hello --kind CONTAINER --interval 5 "
    '--payload \'{"image": "local/busybox:latest", "command": ["echo", "hi"]}\' --wait',
)
@click.option("--name", required=True, help="A name, 1 to 200 characters.")
@click.option(
    "--kind", required=True, type=click.Choice(["HEARTBEAT", "CONTAINER"], case_sensitive=False)
)
@click.option("--interval", required=True, type=int, help="Minutes between runs (1..10080).")
@click.option(
    "--max-failures",
    type=int,
    default=None,
    help="Consecutive failed jobs before the workflow terminates itself [default: 3].",
)
@_with(payload_options)
@click.option("--idempotency-key", help="Retrying with the same key creates nothing twice.")
@_with(wait_options)
@json_option
@click.pass_context
def create(
    ctx: click.Context,
    name: str,
    kind: str,
    interval: int,
    max_failures: int | None,
    payload: str | None,
    payload_file: Path | None,
    idempotency_key: str | None,
    wait: bool,
    wait_timeout: float,
    as_json: bool,
) -> None:
    body: dict[str, Any] = {
        "name": name,
        "kind": kind.upper(),
        "interval": interval,
        "payload": _payload(payload, payload_file) or {},
    }
    if max_failures is not None:
        body["max_consecutive_job_failures_allowed"] = max_failures
    with _config(ctx).client() as client:
        workflow = client.create_workflow(body, idempotency_key=idempotency_key)
        if not as_json:
            click.echo(
                f"created workflow {workflow['id']} ({workflow['kind']}, every "
                f"{workflow['interval']} min, build {workflow['build_status']})"
            )
        if wait:
            workflow = _built(client, workflow["id"], wait_timeout)
            if not as_json:
                click.echo(f"workflow {workflow['id']} is built (COMPLETED)")
    if as_json:
        print_json(workflow)


@workflows.command("list", help="List workflows, newest first.")
@click.option("--kind", type=click.Choice(["HEARTBEAT", "CONTAINER"], case_sensitive=False))
@click.option(
    "--build-status",
    type=click.Choice(["QUEUED", "STARTED", "COMPLETED", "FAILED"], case_sensitive=False),
)
@click.option("--terminated/--active", default=None, help="Only terminated, or only active ones.")
@click.option("--name", help="Only names containing this text (case-insensitive).")
@click.option(
    "--limit", type=click.IntRange(1, 200), default=50, show_default=True, help="Page size."
)
@click.option("--cursor", help="Continue from a previous page's next_cursor.")
@click.option("--all", "fetch_all", is_flag=True, help="Follow cursors to the last page.")
@json_option
@click.pass_context
def list_(
    ctx: click.Context,
    kind: str | None,
    build_status: str | None,
    terminated: bool | None,
    name: str | None,
    limit: int,
    cursor: str | None,
    fetch_all: bool,
    as_json: bool,
) -> None:
    with _config(ctx).client() as client:
        found, cursor = collect_pages(
            lambda after: client.list_workflows(
                kind=kind.upper() if kind else None,
                build_status=build_status.upper() if build_status else None,
                terminated=None if terminated is None else str(terminated).lower(),
                name=name,
                limit=limit,
                cursor=after,
            ),
            "workflows",
            cursor,
            fetch_all,
        )
    if as_json:
        print_json({"workflows": found, "next_cursor": cursor})
        return
    print_table(
        LIST_COLUMNS,
        [
            (
                w["id"],
                w["name"],
                w["kind"],
                f"{w['interval']}m",
                w["build_status"],
                _state(w),
                f"{w['consecutive_job_failures_count']}/{w['max_consecutive_job_failures_allowed']}",
                w["created_at"][:19].replace("T", " "),
            )
            for w in found
        ],
    )
    if cursor:
        click.echo(f"more: --cursor {cursor}", err=True)


@workflows.command("get", help="Show one workflow.")
@click.argument("workflow_id")
@json_option
@click.pass_context
def get(ctx: click.Context, workflow_id: str, as_json: bool) -> None:
    with _config(ctx).client() as client:
        workflow = client.get_workflow(workflow_id)
    _show(workflow, as_json)


@workflows.command(
    "update",
    help="Change a workflow; options you omit keep their values. A --payload replaces the "
    'whole payload; env and headers values are shown as "***", and sending "***" back for a '
    "key keeps its stored value. A changed CONTAINER payload is built again: --wait waits "
    "for that build.",
)
@click.argument("workflow_id")
@click.option("--name")
@click.option("--interval", type=int, help="Minutes between runs (1..10080).")
@click.option("--max-failures", type=int)
@_with(payload_options)
@_with(wait_options)
@json_option
@click.pass_context
def update(
    ctx: click.Context,
    workflow_id: str,
    name: str | None,
    interval: int | None,
    max_failures: int | None,
    payload: str | None,
    payload_file: Path | None,
    wait: bool,
    wait_timeout: float,
    as_json: bool,
) -> None:
    changes: dict[str, Any] = {}
    if name is not None:
        changes["name"] = name
    if interval is not None:
        changes["interval"] = interval
    if max_failures is not None:
        changes["max_consecutive_job_failures_allowed"] = max_failures
    parsed = _payload(payload, payload_file)
    if parsed is not None:
        changes["payload"] = parsed
    if not changes:
        raise click.UsageError(
            "nothing to change: give --name, --interval, --max-failures or --payload"
        )
    with _config(ctx).client() as client:
        workflow = client.update_workflow(workflow_id, changes)
        if wait:
            workflow = _built(client, workflow_id, wait_timeout)
    _show(workflow, as_json)


@workflows.command(
    "wait",
    help="Wait until a workflow's build is COMPLETED, so that `trigger` can run it. Exits 0 "
    "then; exits 1 with the reason if the build FAILED, the workflow is terminated, or "
    "--timeout passes first. With --json, prints the workflow (or the error, with the "
    "workflow as it was last seen).",
)
@click.argument("workflow_id")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=DEFAULT_TIMEOUT_S,
    show_default=True,
    metavar="SECONDS",
    help="How long to wait; a CONTAINER build pulls its image first.",
)
@json_option
@click.pass_context
def wait(ctx: click.Context, workflow_id: str, timeout: float, as_json: bool) -> None:
    with _config(ctx).client() as client:
        workflow = _built(client, workflow_id, timeout)
    if as_json:
        print_json(workflow)
    else:
        click.echo(f"workflow {workflow['id']} is built (COMPLETED)")


@workflows.command("terminate", help="Stop a workflow for good; its history is kept.")
@click.argument("workflow_id")
@json_option
@click.pass_context
def terminate(ctx: click.Context, workflow_id: str, as_json: bool) -> None:
    with _config(ctx).client() as client:
        workflow = client.terminate_workflow(workflow_id)
    if as_json:
        print_json(workflow)
    else:
        click.echo(f"terminated workflow {workflow['id']} at {workflow['terminated_at']}")


@workflows.command("delete", help="Terminate a workflow, then delete it with its jobs and logs.")
@click.argument("workflow_id")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def delete(ctx: click.Context, workflow_id: str, yes: bool) -> None:
    if not yes:
        click.confirm(f"Delete workflow {workflow_id} and all its history?", abort=True)
    with _config(ctx).client() as client:
        client.delete_workflow(workflow_id)
    click.echo(f"deleted workflow {workflow_id}")
