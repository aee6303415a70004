"""``python -m bench.soak`` (``make soak``): the soak run, its table, and JSON in bench/results/."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import click

from bench.environment import ROOT, BenchError, Infrastructure
from bench.soak import SoakOptions, report, run, write

DEFAULT_RESULTS = ROOT / "bench" / "results"


@click.command(
    name="python -m bench.soak",
    help="""Soak Chronoverse: WORKFLOWS liveness HEARTBEAT workflows of interval INTERVAL
    minutes on the whole stack for MINUTES, against the infrastructure `make services` started
    (settings from .run/env), on a database and topics of its own. Then every schedule slot in
    the window must have ended with exactly one job or inside one recorded skip (skipped_runs).
    Prints a Markdown table, writes RESULTS_DIR/soak-<time>.json, and exits non-zero on a
    missed or duplicated slot or a job that did not complete. See docs/reliability.md.""",
)
@click.option("--workflows", type=click.IntRange(min=1), default=10_000, show_default=True)
@click.option("--minutes", type=click.FloatRange(min=0.5), default=10.0, show_default=True)
@click.option("--interval", type=click.IntRange(min=1, max=60), default=1, show_default=True)
@click.option(
    "--execution-workers", type=click.IntRange(min=1, max=8), default=1, show_default=True
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
    help="Where the JSON result and the services' logs go.",
)
def main(
    workflows: int,
    minutes: float,
    interval: int,
    execution_workers: int,
    concurrency: int,
    results_dir: Path,
) -> None:
    infra = Infrastructure.from_environ(os.environ)
    try:
        infra.check()
    except BenchError as exc:
        raise click.ClickException(str(exc)) from exc
    options = SoakOptions(
        workflows=workflows,
        minutes=minutes,
        interval=interval,
        execution_workers=execution_workers,
        concurrency=concurrency,
        run_dir=results_dir / f"soak-{datetime.now(UTC):%Y%m%dT%H%M%SZ}",
    )
    try:
        result = run(infra, options, lambda message: click.echo(f"[soak] {message}", err=True))
    except BenchError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        infra.cleanup()
    click.echo(report(result))
    click.echo(f"\nresult: {write(result, results_dir)}; logs: {options.run_dir}")
    if not result.ok:
        raise click.ClickException("the soak run failed: " + "; ".join(result.violations))


if __name__ == "__main__":
    main()
