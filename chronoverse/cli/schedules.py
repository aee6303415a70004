"""`chronoverse workflows pause|resume|schedule|preview|fires`, and the schedule options that
`workflows create` and `update` share. The rules are in docs/scheduling.md."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

import click

from chronoverse.cli.config import ClientConfig
from chronoverse.cli.output import collect_pages, json_option, print_json, print_table

F = TypeVar("F", bound=Callable[..., Any])

RIGA_EXAMPLE = '--cron "0 3 * * *" --timezone Europe/Riga'
NEXT_COLUMNS = ("AT (UTC)", "LOCAL", "NOTE")
FIRE_COLUMNS = ("SCHEDULED (UTC)", "OUTCOME", "SLOTS", "JOB", "DETAIL")
NOTES = {
    "dst_shifted": "dst_shifted: in the spring-forward gap, runs just after it",
    "dst_repeated": "dst_repeated: in the fall-back overlap, its second run",
}


def with_options(options: list[Callable[[F], F]]) -> Callable[[F], F]:
    """Apply click options in the order listed (as if written one above the other)."""

    def apply(function: F) -> F:
        for option in reversed(options):
            function = option(function)
        return function

    return apply


def _choice(*values: str) -> click.Choice[str]:
    return click.Choice(values, case_sensitive=False)


interval_option = click.option(
    "--interval", type=int, metavar="MINUTES", help="Run every N minutes (1..10080)."
)
cron_options = [
    click.option(
        "--cron",
        metavar="EXPR",
        help='Run on a cron schedule: 5 fields, e.g. "0 3 * * *", or a macro (@hourly, @daily, '
        "@weekly, @monthly, @yearly; not @reboot), read in --timezone.",
    ),
    click.option(
        "--timezone",
        metavar="ZONE",
        help="With --cron, the IANA time zone it is read in, e.g. Europe/Riga [default: UTC].",
    ),
    click.option(
        "--dst-gap",
        type=_choice("shift", "skip"),
        help="With --cron, a local time the clock skips (spring forward): shift runs it just "
        "after the gap, skip does not run it that day. Applies when the minute and hour are "
        "fixed [default: shift].",
    ),
    click.option(
        "--dst-overlap",
        type=_choice("once", "twice"),
        help="With --cron, a local time the clock repeats (fall back): once runs it the first "
        "time, twice both times. Applies when the minute and hour are fixed [default: once].",
    ),
]
catchup_options = [
    click.option(
        "--catchup",
        type=_choice("latest", "none", "all"),
        help="Slots missed while the scheduler was down or the workflow paused: run the latest, "
        "none, or all within --catchup-window; the others go to the fire ledger "
        "[default: latest].",
    ),
    click.option(
        "--catchup-window",
        type=int,
        metavar="MINUTES",
        help="With --catchup all: run the missed slots of the last N minutes (1..10080) "
        "[default: 60].",
    ),
]
preview_options = [
    click.option(
        "--count",
        type=click.IntRange(1, 100),
        default=10,
        show_default=True,
        help="How many runs to list.",
    ),
    click.option(
        "--from",
        "start",
        metavar="TIME",
        help="List the runs at or after this RFC 3339 time, with an offset, e.g. "
        "2027-03-27T12:00:00Z [default: now].",
    ),
]


def schedule_fields(
    *,
    interval: int | None,
    cron: str | None,
    timezone: str | None,
    dst_gap: str | None,
    dst_overlap: str | None,
    required: bool,
) -> dict[str, Any]:
    """The API's schedule fields for the options given; a usage error for both schedules, or
    (``required``) for neither. Every other rule is the server's, which names the bad field."""
    if interval is not None and cron is not None:
        raise click.UsageError("give --interval or --cron, not both")
    if required and interval is None and cron is None:
        raise click.UsageError("give a schedule: --interval MINUTES or --cron EXPR")
    fields: dict[str, Any] = {}
    if interval is not None:
        fields["interval"] = interval
    if cron is not None:
        fields["cron"] = cron
    if timezone is not None:
        fields["timezone"] = timezone
    dst = {
        key: value.lower()
        for key, value in (("gap", dst_gap), ("overlap", dst_overlap))
        if value is not None
    }
    if dst:
        fields["dst"] = dst
    return fields


def catchup_fields(catchup: str | None, window: int | None) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if catchup is not None:
        fields["catchup"] = catchup.lower()
    if window is not None:
        fields["catchup_window_minutes"] = window
    return fields


def schedule_summary(workflow: Mapping[str, Any]) -> str:
    """The schedule in a few words: ``every 5 min``, or ``0 3 * * * (Europe/Riga)``."""
    if workflow.get("cron") is None:
        return f"every {workflow['interval']} min"
    return f"{workflow['cron']} ({workflow['timezone']})"


def utc_text(value: str) -> str:
    """An API instant as ``2027-03-28T01:00:00Z``: UTC, to the second."""
    instant = datetime.fromisoformat(value).astimezone(UTC)
    return instant.strftime("%Y-%m-%dT%H:%M:%SZ")


def local_text(value: str) -> str:
    """An API wall time as ``2027-03-28T04:00:00+03:00``: its own offset, to the second."""
    return datetime.fromisoformat(value).replace(microsecond=0).isoformat()


def print_next_runs(runs: list[dict[str, Any]]) -> None:
    print_table(
        NEXT_COLUMNS,
        [
            (
                utc_text(run["at"]),
                local_text(run["local"]),
                NOTES.get(run["note"], run["note"]) if run["note"] else "",
            )
            for run in runs
        ],
    )


def _slot_range(entry: Mapping[str, Any]) -> str:
    last = utc_text(entry["scheduled_at"])
    first = utc_text(entry["first_scheduled_at"])
    return last if first == last else f"{first} .. {last}"


def _config(ctx: click.Context) -> ClientConfig:
    config = ctx.find_object(ClientConfig)
    assert config is not None
    return config


@click.command(
    "pause",
    help="Pause a workflow: no automatic jobs, and no failures counted, until it is resumed. "
    "Manual runs (`chronoverse trigger`) are still allowed; pausing twice changes nothing; a "
    "terminated workflow cannot be paused. Example:\n\n"
    "\b\n  chronoverse workflows pause <id>",
)
@click.argument("workflow_id")
@json_option
@click.pass_context
def pause(ctx: click.Context, workflow_id: str, as_json: bool) -> None:
    with _config(ctx).client() as client:
        workflow = client.pause_workflow(workflow_id)
    if as_json:
        print_json(workflow)
    else:
        click.echo(f"paused workflow {workflow['id']} (since {workflow['paused_at']})")


@click.command(
    "resume",
    help="Resume a paused workflow. The slots that fell while it was paused follow its "
    "--catchup policy at once: the latest runs now (default), or none, or all within the "
    "window; the others are entered in the fire ledger as PAUSED (`workflows fires`). Example:"
    "\n\n\b\n  chronoverse workflows resume <id>",
)
@click.argument("workflow_id")
@json_option
@click.pass_context
def resume(ctx: click.Context, workflow_id: str, as_json: bool) -> None:
    with _config(ctx).client() as client:
        workflow = client.resume_workflow(workflow_id)
    if as_json:
        print_json(workflow)
    else:
        click.echo(f"resumed workflow {workflow['id']}; next run at {workflow['next_run_at']}")


@click.command(
    "schedule",
    help="List a workflow's next runs: the UTC instant, the wall time in its zone with the "
    "offset, and a note where a daylight-saving change moved or repeated a run. For a workflow "
    f"created with {RIGA_EXAMPLE}:\n\n"
    "\b\n  chronoverse workflows schedule <id> --from 2027-03-27T12:00:00Z --count 3",
)
@click.argument("workflow_id")
@with_options(preview_options)
@json_option
@click.pass_context
def schedule(
    ctx: click.Context, workflow_id: str, count: int, start: str | None, as_json: bool
) -> None:
    with _config(ctx).client() as client:
        runs = client.workflow_schedule(workflow_id, count=count, start=start)["next"]
    if as_json:
        print_json({"next": runs})
    elif not runs:
        click.echo(f"workflow {workflow_id} has no next runs: it is terminated")
    else:
        print_next_runs(runs)


@click.command(
    "preview",
    help="List the next runs of a schedule without saving anything, as `workflows schedule` "
    "does for a saved one. Give --interval, or --cron with its zone and DST policy. The "
    "spring change in Riga, where 03:00 does not exist on 2027-03-28:\n\n"
    f"\b\n  chronoverse workflows preview {RIGA_EXAMPLE} \\\n"
    "      --from 2027-03-27T12:00:00Z --count 3",
)
@interval_option
@with_options(cron_options)
@with_options(preview_options)
@json_option
@click.pass_context
def preview(
    ctx: click.Context,
    interval: int | None,
    cron: str | None,
    timezone: str | None,
    dst_gap: str | None,
    dst_overlap: str | None,
    count: int,
    start: str | None,
    as_json: bool,
) -> None:
    fields = schedule_fields(
        interval=interval,
        cron=cron,
        timezone=timezone,
        dst_gap=dst_gap,
        dst_overlap=dst_overlap,
        required=True,
    )
    with _config(ctx).client() as client:
        runs = client.preview_schedule(fields, count=count, start=start)["next"]
    if as_json:
        print_json({"next": runs})
    else:
        print_next_runs(runs)


@click.command(
    "fires",
    help="Show a workflow's fire ledger, newest first: what happened to each slot. FIRED "
    "(with its job), OVERLAP (the previous job was still active), MISSED (the scheduler could "
    "not run it in time), PAUSED (it fell while paused), QUOTA (its owner was at the "
    "active-jobs quota); several slots in one entry show their "
    "range. Example:\n\n"
    "\b\n  chronoverse workflows fires <id> --all",
)
@click.argument("workflow_id")
@click.option(
    "--limit", type=click.IntRange(1, 200), default=50, show_default=True, help="Page size."
)
@click.option("--cursor", help="Continue from a previous page's next_cursor.")
@click.option("--all", "fetch_all", is_flag=True, help="Follow cursors to the last page.")
@json_option
@click.pass_context
def fires(
    ctx: click.Context,
    workflow_id: str,
    limit: int,
    cursor: str | None,
    fetch_all: bool,
    as_json: bool,
) -> None:
    with _config(ctx).client() as client:
        found, cursor = collect_pages(
            lambda after: client.list_fires(workflow_id, limit=limit, cursor=after),
            "fires",
            cursor,
            fetch_all,
        )
    if as_json:
        print_json({"fires": found, "next_cursor": cursor})
        return
    print_table(
        FIRE_COLUMNS,
        [(_slot_range(f), f["outcome"], f["slots"], f["job_id"], f["detail"]) for f in found],
    )
    if cursor:
        click.echo(f"more: --cursor {cursor}", err=True)


COMMANDS = (pause, resume, schedule, preview, fires)
