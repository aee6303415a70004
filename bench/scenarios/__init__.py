"""The scenarios, in the order `make bench` runs them. Each is ``run(ctx) -> ScenarioResult``."""

from __future__ import annotations

from collections.abc import Callable

from bench.context import BenchContext
from bench.results import ScenarioResult
from bench.scenarios import (
    celery_baseline,
    containers,
    floor,
    footprint,
    heartbeat,
    logs,
    scaleout,
    scheduler,
    steady,
    viewers,
)

Scenario = Callable[[BenchContext], ScenarioResult]

SCENARIOS: dict[str, Scenario] = {
    floor.NAME: floor.run,  # first: the others are compared with it
    scheduler.NAME: scheduler.run,
    heartbeat.NAME: heartbeat.run,
    steady.NAME: steady.run,
    celery_baseline.NAME: celery_baseline.run,
    footprint.NAME: footprint.run,
    containers.NAME: containers.run,
    logs.NAME: logs.run,
    viewers.NAME: viewers.run,
    scaleout.NAME: scaleout.run,
}


def combine(results: list[ScenarioResult]) -> list[ScenarioResult]:
    """Cross-scenario rows (ours against a baseline measured by another scenario)."""
    celery_baseline.compare(results)
    floor.compare(results)
    return results
