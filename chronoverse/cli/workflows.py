"""`chronoverse workflows …`: create, list, get, update, wait for the build, terminate and delete,
over the HTTP API (pause, resume and the schedule commands are in ``schedules``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from chronoverse.cli.builds import DEFAULT_TIMEOUT_S, wait_for_build
from chronoverse.cli.config import ClientConfig
from chronoverse.cli.output import collect_pages, json_option, print_json, print_record, print_table
from chronoverse.cli.schedules import (
    COMMANDS,
    RIGA_EXAMPLE,
    catchup_fields,
    catchup_options,
    cron_options,
    interval_option,
    schedule_fields,
    schedule_summary,
    with_options,
)
from chronoverse.client import Client

LIST_COLUMNS = ("ID", "NAME", "KIND", "SCHEDULE", "STATE", "BUILD", "FAILURES", "CREATED")


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


def _show(workflow: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(workflow)
        return
    # What a person looks for first, then every field as the API gives it.
    print_record(
        {
            "id": workflow["id"],
            "name": workflow["name"],
            "kind": workflow["kind"],
            "schedule": schedule_summary(workflow),
            "state": workflow["state"],
            **workflow,
        }
    )


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


@click.group(
    help="Create, inspect and change workflows and wait for their builds; pause and resume "
    "them, list their next runs and their fire ledger. Schedules: docs/scheduling.md."
)
def workflows() -> None:
    pass


for _command in COMMANDS:
    workflows.add_command(_command)


@workflows.command(
    "create",
    help="Create a workflow that runs every --interval minutes, or on a --cron schedule in a "
    "--timezone. Its jobs run once its build is COMPLETED: within a second or so for a "
    "HEARTBEAT (once the workflow worker has seen it), after the image is pulled and checked "
    "for a CONTAINER. --wait waits for that, so that `trigger` can follow. A new interval "
    "workflow runs at once, a cron one at its next slot. Examples, the second at 03:00 Riga "
    "time every day (`workflows preview` shows the next runs first):\n\n"
    "\b\n  chronoverse workflows create --name hello --kind CONTAINER --interval 5 "
    '--payload \'{"image": "local/busybox:latest", "command": ["echo", "hi"]}\' --wait\n'
    f"  chronoverse workflows create --name nightly --kind HEARTBEAT {RIGA_EXAMPLE} "
    '--dst-gap skip --payload \'{"endpoint": "https://example.com/ping"}\'',
)
@click.option("--name", required=True, help="A name, 1 to 200 characters.")
@click.option(
    "--kind", required=True, type=click.Choice(["HEARTBEAT", "CONTAINER"], case_sensitive=False)
)
@interval_option
@with_options(cron_options)
@with_options(catchup_options)
@click.option(
    "--max-failures",
    type=int,
    default=None,
    help="Consecutive failed jobs before the workflow terminates itself [default: 3].",
)
@click.option(
    "--retain-logs/--no-retain-logs",
    default=None,
    help="Keep the jobs' log lines [default: keep]. --no-retain-logs: live viewers still see "
    "every line, but each attempt's lines are deleted shortly after it ends.",
)
@with_options(payload_options)
@click.option("--idempotency-key", help="Retrying with the same key creates nothing twice.")
@with_options(wait_options)
@json_option
@click.pass_context
def create(
    ctx: click.Context,
    name: str,
    kind: str,
    interval: int | None,
    cron: str | None,
    timezone: str | None,
    dst_gap: str | None,
    dst_overlap: str | None,
    catchup: str | None,
    catchup_window: int | None,
    max_failures: int | None,
    retain_logs: bool | None,
    payload: str | None,
    payload_file: Path | None,
    idempotency_key: str | None,
    wait: bool,
    wait_timeout: float,
    as_json: bool,
) -> None:
    schedule = schedule_fields(
        interval=interval,
        cron=cron,
        timezone=timezone,
        dst_gap=dst_gap,
        dst_overlap=dst_overlap,
        required=True,
    )
    body: dict[str, Any] = {
        "name": name,
        "kind": kind.upper(),
        **schedule,
        **catchup_fields(catchup, catchup_window),
        "payload": _payload(payload, payload_file) or {},
    }
    if max_failures is not None:
        body["max_consecutive_job_failures_allowed"] = max_failures
    if retain_logs is not None:
        body["retain_logs"] = retain_logs
    with _config(ctx).client() as client:
        workflow = client.create_workflow(body, idempotency_key=idempotency_key)
        if not as_json:
            click.echo(
                f"created workflow {workflow['id']} ({workflow['kind']}, "
                f"{schedule_summary(workflow)}, build {workflow['build_status']})"
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
@click.option(
    "--terminated/--active",
    default=None,
    help="Only terminated, or only not terminated ones (active or paused).",
)
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
                schedule_summary(w),
                w["state"],
                w["build_status"],
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
    help="Change a workflow; options you omit keep their values. --interval or --cron "
    "replaces the schedule (a new --cron for a cron workflow keeps its zone and DST policy "
    "unless given); --timezone, --dst-gap or --dst-overlap alone change a cron workflow's. "
    'A --payload replaces the whole payload; env and headers values are shown as "***", and '
    'sending "***" back for a key keeps its stored value. A changed CONTAINER payload is built '
    "again: --wait waits for that build. Example, a move to 03:00 Riga time:\n\n"
    f"\b\n  chronoverse workflows update <id> {RIGA_EXAMPLE}",
)
@click.argument("workflow_id")
@click.option("--name")
@interval_option
@with_options(cron_options)
@with_options(catchup_options)
@click.option("--max-failures", type=int)
@click.option(
    "--retain-logs/--no-retain-logs",
    default=None,
    help="Keep the jobs' log lines, or delete each attempt's shortly after it ends.",
)
@with_options(payload_options)
@with_options(wait_options)
@json_option
@click.pass_context
def update(
    ctx: click.Context,
    workflow_id: str,
    name: str | None,
    interval: int | None,
    cron: str | None,
    timezone: str | None,
    dst_gap: str | None,
    dst_overlap: str | None,
    catchup: str | None,
    catchup_window: int | None,
    max_failures: int | None,
    retain_logs: bool | None,
    payload: str | None,
    payload_file: Path | None,
    wait: bool,
    wait_timeout: float,
    as_json: bool,
) -> None:
    changes: dict[str, Any] = {}
    if name is not None:
        changes["name"] = name
    changes |= schedule_fields(
        interval=interval,
        cron=cron,
        timezone=timezone,
        dst_gap=dst_gap,
        dst_overlap=dst_overlap,
        required=False,
    )
    changes |= catchup_fields(catchup, catchup_window)
    if max_failures is not None:
        changes["max_consecutive_job_failures_allowed"] = max_failures
    if retain_logs is not None:
        changes["retain_logs"] = retain_logs
    parsed = _payload(payload, payload_file)
    if parsed is not None:
        changes["payload"] = parsed
    if not changes:
        raise click.UsageError(
            "nothing to change: give --name, --interval, --cron, --timezone, --dst-gap, "
            "--dst-overlap, --catchup, --catchup-window, --max-failures, --retain-logs or "
            "--payload"
        )
    with _config(ctx).client() as client:
        if len(changes.get("dst", {})) == 1 and interval is None:
            # The API replaces the whole policy: keep the half that was not given.
            current = client.get_workflow(workflow_id)["dst"] or {}
            changes["dst"] = {**current, **changes["dst"]}
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
