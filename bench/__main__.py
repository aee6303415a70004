"""``python -m bench``: run the benchmark scenarios, print the table, write the JSON results."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import click

from bench.context import BenchContext, Options
from bench.environment import ROOT, BenchError, Infrastructure, describe_machine
from bench.report import markdown_table, text_table, write_json
from bench.results import ScenarioResult
from bench.scenarios import SCENARIOS, combine

DEFAULT_RESULTS = ROOT / "bench" / "results"


@click.command(
    name="python -m bench",
    help=f"""Benchmark Chronoverse against real Postgres, Redis, the broker and Docker (the
    infrastructure `make services` starts; settings from .run/env). Each scenario gets its own
    database and topics, runs its repeats and reports the median. Prints a table and writes
    RESULTS_DIR/<time>.json and RESULTS_DIR/latest.json. Targets are reported, never asserted.

    Scenarios, in order: {", ".join(SCENARIOS)}. `footprint` reads the services' memory at rest
    and under the `heartbeat` workload; `celery` is the baseline `heartbeat` is compared with.
    See docs/benchmarks.md.""",
)
@click.option(
    "--scenario",
    "-s",
    "selected",
    multiple=True,
    type=click.Choice([*SCENARIOS, "all"]),
    default=("all",),
    show_default=True,
    help="Scenario to run; repeat the option for several.",
)
@click.option(
    "--repeats",
    type=click.IntRange(min=1),
    default=None,
    help="Repeats of every selected scenario. Default: each one's own (5; steady 1, scaleout 3).",
)
@click.option(
    "--scale",
    type=click.FloatRange(min=0.0, min_open=True, max=1.0),
    default=1.0,
    show_default=True,
    help="Multiply every job, workflow and line count by this (e.g. 0.05 for a smoke run).",
)
@click.option(
    "--execution-workers",
    type=click.IntRange(min=1, max=8),
    default=1,
    show_default=True,
    help="Execution worker processes in the full stack.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1, max=256),
    default=16,
    show_default=True,
    help="CHRONOVERSE_CONCURRENCY of each execution worker.",
)
@click.option(
    "--results-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_RESULTS,
    show_default=True,
    help="Where the JSON results and the services' logs go.",
)
@click.option("--markdown", is_flag=True, help="Also print the table as Markdown.")
def main(
    selected: tuple[str, ...],
    repeats: int | None,
    scale: float,
    execution_workers: int,
    concurrency: int,
    results_dir: Path,
    markdown: bool,
) -> None:
    names = list(SCENARIOS) if "all" in selected else [n for n in SCENARIOS if n in selected]
    infra = Infrastructure.from_environ(os.environ)
    try:
        infra.check()
    except BenchError as exc:
        raise click.ClickException(str(exc)) from exc
    started_at = datetime.now(UTC)
    options = Options(
        repeats=repeats,
        scale=scale,
        execution_workers=execution_workers,
        concurrency=concurrency,
        run_dir=results_dir / started_at.strftime("%Y%m%dT%H%M%SZ"),
    )
    ctx = BenchContext(infra, options)
    results: list[ScenarioResult] = []
    failure: BenchError | None = None
    try:
        for name in names:
            ctx.progress(f"scenario {name}")
            began = time.monotonic()
            result = SCENARIOS[name](ctx)
            result.duration_s = time.monotonic() - began
            results.append(result)
    except BenchError as exc:
        failure = exc
    finally:
        ctx.close()
    results = combine(results)
    click.echo(text_table(results))
    if markdown:
        click.echo("\n" + markdown_table(results))
    path = write_json(
        results,
        started_at=started_at,
        finished_at=datetime.now(UTC),
        machine=describe_machine(infra),
        options={
            **asdict(options),
            "scenarios": names,
            "full_stack": ctx.full_stack_config(),
            "command": " ".join(sys.argv),
        },
        directory=results_dir,
    )
    click.echo(f"\nresults: {path} (and {path.with_name('latest.json')})")
    if failure is not None:
        raise click.ClickException(f"a scenario failed: {failure}")


if __name__ == "__main__":
    main()
