"""Scenario 6: footprint. The resident memory of every service process, at rest and under load.

At rest: read once, after the full stack has been ready and idle for a few seconds. Under load:
the largest reading, sampled every 0.2 s, during the `heartbeat` scenario (run here once if it
was not selected).
"""

from __future__ import annotations

from bench.context import BenchContext
from bench.results import Compare, Metric, ScenarioResult, Target
from bench.scenarios import heartbeat

NAME = "footprint"


def run(ctx: BenchContext) -> ScenarioResult:
    full = ctx.full_stack()
    if not ctx.load_rss:
        heartbeat.run_once(ctx, full, ctx.scaled(heartbeat.WORKFLOWS))
    idle_target = Target(compare=Compare.AT_MOST, value=80)
    metrics: list[Metric] = []
    for name in full.stack.processes:
        if name in full.idle_rss:
            metrics.append(
                Metric(
                    scenario=NAME,
                    name=f"RSS at rest: {name}",
                    unit="MiB",
                    samples=(full.idle_rss[name],),
                    target=idle_target,
                )
            )
    for name in full.stack.processes:
        if name in ctx.load_rss:
            metrics.append(
                Metric(
                    scenario=NAME,
                    name=f"RSS peak under heartbeat: {name}",
                    unit="MiB",
                    samples=(ctx.load_rss[name],),
                )
            )
    return ScenarioResult(
        name=NAME,
        title="Footprint",
        setup=(
            "VmRSS of each service process of the full stack (/proc/<pid>/status): at rest, "
            "read after the stack was ready and idle for 5 s; under load, the peak of readings "
            "every 0.2 s while the heartbeat scenario ran."
        ),
        config=ctx.full_stack_config(),
        metrics=metrics,
    )
