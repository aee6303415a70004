"""`chronoverse analytics`: jobs, durations, execution time and log lines over a window."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import click

from chronoverse.cli.config import ClientConfig
from chronoverse.cli.output import json_option, print_json, print_table

_RELATIVE = re.compile(r"(?P<count>[0-9]{1,6})(?P<unit>[mhd])")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}


def since_value(text: str, *, now: datetime) -> str:
    """``--since`` as the API takes it: an RFC 3339 time as given, or ``<n>m|h|d`` before now."""
    relative = _RELATIVE.fullmatch(text.strip())
    if relative is None:
        return text
    ago = timedelta(**{_UNITS[relative["unit"]]: int(relative["count"])})
    return (now - ago).isoformat(timespec="seconds")


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}s"


def figure_rows(result: dict[str, Any]) -> list[tuple[str, Any]]:
    """The figures of an analytics result, one (name, value) row each, for people."""
    rate = result["success_rate"]
    rows: list[tuple[str, Any]] = [
        ("since", result["since"]),
        ("until", result["until"]),
        ("jobs", result["jobs"]),
        *((f"  {status}", n) for status, n in result["jobs_by_status"].items()),
        ("success rate", "-" if rate is None else f"{rate:.1%}"),
        ("duration p50", _seconds(result["duration_p50_s"])),
        ("duration p95", _seconds(result["duration_p95_s"])),
        ("execution time", _seconds(result["execution_time_s"])),
        ("log lines", result["log_lines"]),
    ]
    workflows = result.get("workflows")
    if workflows is not None:
        rows.append(("workflows", workflows["total"]))
        rows.extend((f"  {state}", n) for state, n in workflows["by_state"].items())
        rows.extend((f"  build {status}", n) for status, n in workflows["by_build_status"].items())
    return rows


@click.command(
    help="Your jobs created in a window, or one workflow's: by status, success rate, p50 and "
    "p95 duration, total execution time, log lines; and your workflows by state.\n\n"
    "\b\n  chronoverse analytics --since 24h\n"
    "  chronoverse analytics --workflow <id> --since 2027-03-01T00:00:00Z --json"
)
@click.option("--workflow", "workflow_id", metavar="ID", help="One workflow's jobs only.")
@click.option(
    "--since",
    metavar="TIME",
    help="RFC 3339 with an offset, or a span before now such as 90m, 24h or 30d "
    "[default: 7 days; at most 90].",
)
@json_option
@click.pass_obj
def analytics(
    config: ClientConfig, workflow_id: str | None, since: str | None, as_json: bool
) -> None:
    start = since_value(since, now=datetime.now(UTC)) if since else None
    with config.client() as client:
        result = client.analytics(workflow_id=workflow_id, since=start)
    if as_json:
        print_json(result)
    else:
        print_table(("FIGURE", "VALUE"), figure_rows(result))
