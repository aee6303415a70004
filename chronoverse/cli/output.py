"""Printing results: aligned tables for people, JSON for scripts (see ``errors`` for failures)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import click


def collect_pages(
    fetch: Callable[[str | None], Any], key: str, cursor: str | None, fetch_all: bool
) -> tuple[list[dict[str, Any]], str | None]:
    """One page from ``cursor``, or every page with ``fetch_all``; and the cursor left over."""
    found: list[dict[str, Any]] = []
    while True:
        page = fetch(cursor)
        found.extend(page[key])
        cursor = page["next_cursor"]
        if not fetch_all or cursor is None:
            return found, cursor


json_option = click.option(
    "--json",
    "as_json",
    is_flag=True,
    help='Print JSON for scripts; a failure prints the API\'s {"error": …} object, also on stdout.',
)


def print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True))


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [
        [str(h) for h in headers],
        *[["" if c is None else str(c) for c in row] for row in rows],
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        click.echo(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


def print_record(record: dict[str, Any]) -> None:
    width = max(len(key) for key in record)
    for key, value in record.items():
        shown = json.dumps(value, sort_keys=True) if isinstance(value, dict | list) else value
        click.echo(f"{key.ljust(width)}  {'' if shown is None else shown}")
