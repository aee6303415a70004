"""`chronoverse trigger` and `chronoverse jobs …`: manual runs, a workflow's jobs, and each job's
history."""

from __future__ import annotations

from typing import Any

import click

from chronoverse.cli.config import ClientConfig
from chronoverse.cli.output import collect_pages, json_option, print_json, print_record, print_table

JOB_COLUMNS = ("ID", "STATUS", "TRIGGER", "SCHEDULED", "STARTED", "ATTEMPT", "ERROR")
STATUSES = ["PENDING", "QUEUED", "RUNNING", "COMPLETED", "FAILED", "CANCELED"]


def _short_time(value: str | None) -> str:
    return value[:19].replace("T", " ") if value else ""


def event_details(data: dict[str, Any], *, width: int = 60) -> str:
    """An event's data on one line, ``key=value`` for the keys that have a value."""
    parts = []
    for key, value in data.items():
        if value is None:
            continue
        text = str(value).lower() if isinstance(value, bool) else str(value)
        parts.append(f"{key}={text if len(text) <= width else text[: width - 1] + '…'}")
    return " ".join(parts)


@click.command(
    help="Run a workflow now (a MANUAL job) and print the job. Refused (workflow_not_built) "
    "until the workflow's build is COMPLETED: `chronoverse workflows wait` waits for that."
)
@click.argument("workflow_id")
@click.option("--idempotency-key", help="Retrying with the same key starts one job only.")
@json_option
@click.pass_obj
def trigger(
    config: ClientConfig, workflow_id: str, idempotency_key: str | None, as_json: bool
) -> None:
    with config.client() as client:
        job = client.run_workflow(workflow_id, idempotency_key=idempotency_key)
    if as_json:
        print_json(job)
    else:
        click.echo(f"started job {job['id']} of workflow {workflow_id} ({job['status']})")


@click.group(help="A workflow's jobs.")
def jobs() -> None:
    pass


@jobs.command("list", help="List a workflow's jobs, newest first.")
@click.argument("workflow_id")
@click.option("--status", type=click.Choice(STATUSES, case_sensitive=False))
@click.option(
    "--trigger", "trigger_", type=click.Choice(["AUTOMATIC", "MANUAL"], case_sensitive=False)
)
@click.option("--limit", type=click.IntRange(1, 200), default=50, show_default=True)
@click.option("--cursor", help="Continue from a previous page's next_cursor.")
@click.option("--all", "fetch_all", is_flag=True, help="Follow cursors to the last page.")
@json_option
@click.pass_obj
def list_(
    config: ClientConfig,
    workflow_id: str,
    status: str | None,
    trigger_: str | None,
    limit: int,
    cursor: str | None,
    fetch_all: bool,
    as_json: bool,
) -> None:
    with config.client() as client:
        found, cursor = collect_pages(
            lambda after: client.list_jobs(
                workflow_id,
                status=status.upper() if status else None,
                trigger=trigger_.upper() if trigger_ else None,
                limit=limit,
                cursor=after,
            ),
            "jobs",
            cursor,
            fetch_all,
        )
    if as_json:
        print_json({"jobs": found, "next_cursor": cursor})
        return
    print_table(
        JOB_COLUMNS,
        [
            (
                j["id"],
                j["status"],
                j["trigger"],
                _short_time(j["scheduled_at"]),
                _short_time(j["started_at"]),
                j["attempt"],
                (j["error"] or "")[:60],
            )
            for j in found
        ],
    )
    if cursor:
        click.echo(f"more: --cursor {cursor}", err=True)


@jobs.command("get", help="Show one job.")
@click.argument("workflow_id")
@click.argument("job_id")
@json_option
@click.pass_obj
def get(config: ClientConfig, workflow_id: str, job_id: str, as_json: bool) -> None:
    with config.client() as client:
        job = client.get_job(workflow_id, job_id)
    if as_json:
        print_json(job)
    else:
        print_record(job)


@jobs.command(
    "events",
    help="A job's history, oldest first: when it was created, published, claimed (by which "
    "worker), retried and why, and how it ended. The newest 1000 events at most.",
)
@click.argument("workflow_id")
@click.argument("job_id")
@json_option
@click.pass_obj
def events(config: ClientConfig, workflow_id: str, job_id: str, as_json: bool) -> None:
    with config.client() as client:
        history = client.job_events(workflow_id, job_id)
    if as_json:
        print_json(history)
        return
    print_table(
        ("AT", "EVENT", "DETAILS"),
        [
            (e["at"][:23].replace("T", " "), e["type"], event_details(e["data"]))
            for e in history["events"]
        ],
    )
    if history["truncated"]:
        click.echo("older events were left out", err=True)
