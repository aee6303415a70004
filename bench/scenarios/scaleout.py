"""Scenario: the scale-out curve. End-to-end HEARTBEAT jobs/s with more worker processes.

The heartbeat scenario's measurement (10,000 liveness HEARTBEATs due at once, until every job is
COMPLETED) on stacks of their own with 1, 2 and 4 execution workers and one scheduling worker,
then with 2 scheduling workers and 1 and 2 execution workers. Each repeat also reads the CPU
seconds of every process it involves (bench/cpu.py): the services, per program, Postgres (this
database's backends and the server's background processes), Redis and the broker. On a machine
with few cores the curve flattens; the CPU per job says what each process would need elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from bench.context import BenchContext
from bench.cpu import CpuMeter
from bench.database import QUERIES, reset
from bench.measure import median
from bench.results import Metric, ScenarioResult
from bench.scenarios import heartbeat
from chronoverse.postgres import Conn

NAME = "scaleout"
REPEATS = 3
TOTAL = "all processes"
# Nothing of a liveness HEARTBEAT passes through these: one row for the three.
IDLE = {"server", "workflow-worker", "log-processor"}
OTHERS = "server, workflow and log workers"
PROGRAMS = ("scheduling-worker", "execution-worker", OTHERS, "postgres", "redis", "broker (tansu)")


@dataclass(frozen=True, kw_only=True)
class Layout:
    scheduling_workers: int
    execution_workers: int

    @property
    def label(self) -> str:
        return f"{self.scheduling_workers} scheduling x {self.execution_workers} execution"


LAYOUTS = (
    Layout(scheduling_workers=1, execution_workers=1),
    Layout(scheduling_workers=1, execution_workers=2),
    Layout(scheduling_workers=1, execution_workers=4),
    Layout(scheduling_workers=2, execution_workers=1),
    Layout(scheduling_workers=2, execution_workers=2),
)


def run(ctx: BenchContext) -> ScenarioResult:
    count = ctx.scaled(heartbeat.WORKFLOWS)
    repeats = ctx.repeats(REPEATS)
    metrics: list[Metric] = []
    cpu_table: dict[str, dict[str, list[float]]] = {}
    for layout in LAYOUTS:
        rates, wal, cpu = _measure(ctx, layout, count, repeats)
        cpu_table[layout.label] = cpu
        metrics.append(
            Metric(
                scenario=NAME,
                name=f"{layout.label}: jobs run to COMPLETED",
                unit="jobs/s",
                samples=tuple(rates),
            )
        )
        metrics.append(
            Metric(
                scenario=NAME,
                name=f"{layout.label}: WAL per job (whole server)",
                unit="bytes",
                samples=tuple(wal),
                note=(
                    "every database's writes while the repeat ran, the seed's workflows too: "
                    "an upper bound"
                ),
            )
        )
        metrics += [
            Metric(
                scenario=NAME,
                name=f"{layout.label}: CPU per job, {program}",
                unit="us",
                samples=tuple(samples),
            )
            for program, samples in cpu.items()
        ]
    return ScenarioResult(
        name=NAME,
        title="Scale-out",
        setup=(
            f"The heartbeat scenario's measurement ({count:,} liveness HEARTBEATs due at once, "
            "from the seed's commit until every job is COMPLETED) on a full stack of its own per "
            "layout: "
            + ", ".join(layout.label for layout in LAYOUTS)
            + " worker processes (topics of 6 partitions). CPU per job: utime + stime from "
            "/proc of each process before and after a repeat, summed per program, divided by "
            "the jobs: the services (and their children); Postgres as this database's backends "
            "(not the bench's own, which seeds and polls) plus the server's background "
            "processes; redis-server and tansu whole (shared with anything else running on "
            f"them). {repeats} repeats per layout."
        ),
        config={
            "workflows": count,
            "repeats": repeats,
            "layouts": [layout.label for layout in LAYOUTS],
            "cpu_us_per_job_median": {
                label: {program: round(median(s), 1) for program, s in cpu.items()}
                for label, cpu in cpu_table.items()
            },
            **ctx.full_stack_config(),
            "execution_workers": "per layout",
        },
        metrics=metrics,
    )


def _measure(
    ctx: BenchContext, layout: Layout, count: int, repeats: int
) -> tuple[list[float], list[float], dict[str, list[float]]]:
    """Of each repeat: jobs/s, WAL bytes per job, and CPU microseconds per job per program."""
    full = ctx.start_full_stack(
        f"{NAME}-{layout.scheduling_workers}x{layout.execution_workers}",
        execution_workers=layout.execution_workers,
        scheduling_workers=layout.scheduling_workers,
    )
    database = urlsplit(full.database_url).path.lstrip("/")
    rates: list[float] = []
    wal: list[float] = []
    cpu: dict[str, list[float]] = {TOTAL: [], **{program: [] for program in PROGRAMS}}
    try:
        for repeat in range(repeats):
            meter = CpuMeter(full.stack.pids(), database, exclude={full.conn.info.backend_pid})
            wal_before = _wal_position(full.conn)
            meter.start()
            rate, _ = heartbeat.run_once(ctx, full, count)
            used = meter.stop()
            rates.append(rate)
            wal.append(round((_wal_position(full.conn) - wal_before) / count))
            grouped = dict.fromkeys(PROGRAMS, 0.0)
            for program, seconds in used.items():
                key = OTHERS if program in IDLE else program
                grouped[key] = grouped.get(key, 0.0) + seconds
            for program, seconds in grouped.items():
                cpu.setdefault(program, []).append(round(seconds / count * 1e6, 1))
            cpu[TOTAL].append(round(sum(used.values()) / count * 1e6, 1))
            ctx.progress(
                f"{NAME} {layout.label}, {repeat + 1}/{repeats}: {rate:,.0f} jobs/s, CPU "
                + ", ".join(f"{p} {used[p]:.2f} s" for p in sorted(used))
            )
        reset(full.conn)
    finally:
        full.conn.close()
        full.stack.stop_all()
    return rates, wal, cpu


def _wal_position(conn: Conn) -> float:
    row = conn.execute(QUERIES.wal_position).fetchone()
    assert row is not None
    return float(row["bytes"])
