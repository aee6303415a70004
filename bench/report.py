"""The report: a table for the terminal (or Markdown for docs/benchmarks.md), and JSON files."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.results import Metric, ScenarioResult

COLUMNS = ("scenario", "metric", "ours", "baseline", "ratio", "target", "met?")


def format_value(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit in {"jobs/s", "lines/s"}:
        return f"{value:,.0f} {unit}" if value >= 100 else f"{value:.1f} {unit}"
    if unit == "ms":
        return f"{value:,.1f} ms"
    if unit == "MiB":
        return f"{value:.1f} MiB"
    return f"{value:g} {unit}"


def row(metric: Metric) -> tuple[str, ...]:
    baseline = format_value(metric.baseline, metric.unit)
    if metric.baseline is not None and metric.baseline_name:
        baseline = f"{baseline} ({metric.baseline_name})"
    met = {True: "yes", False: "NO", None: ""}[metric.met]
    return (
        metric.scenario,
        metric.name,
        format_value(metric.ours, metric.unit),
        baseline,
        f"{metric.ratio:.2f}x" if metric.ratio is not None else "",
        metric.target.describe(metric.unit) if metric.target else "",
        met,
    )


def _rows(results: Sequence[ScenarioResult]) -> list[tuple[str, ...]]:
    return [row(metric) for result in results for metric in result.metrics]


def text_table(results: Sequence[ScenarioResult]) -> str:
    rows = [COLUMNS, *_rows(results)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(r, widths, strict=True)) for r in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(line.rstrip() for line in lines)


def markdown_table(results: Sequence[ScenarioResult]) -> str:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    out = [line(COLUMNS), line(["---"] * len(COLUMNS))]
    out += [line(r) for r in _rows(results)]
    return "\n".join(out)


def write_json(
    results: Sequence[ScenarioResult],
    *,
    started_at: datetime,
    finished_at: datetime,
    machine: dict[str, Any],
    options: dict[str, Any],
    directory: Path,
) -> Path:
    """Write ``<started_at>.json`` and ``latest.json`` under ``directory``; the first's path."""
    document = {
        "started_at": started_at.isoformat(),
        "finished_at": finished_at.isoformat(),
        "machine": machine,
        "options": options,
        "scenarios": [result.to_json() for result in results],
    }
    directory.mkdir(parents=True, exist_ok=True)
    text = json.dumps(document, indent=2, default=str) + "\n"
    path = directory / f"{started_at.strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(text)
    (directory / "latest.json").write_text(text)
    return path
