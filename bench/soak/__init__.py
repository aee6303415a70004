"""The soak run: many interval-1 liveness workflows for a while, and an account of every slot.

``python -m bench.soak`` (``make soak``) inserts built liveness HEARTBEAT workflows whose first
slots are spread evenly over the first interval, runs the whole stack on them for the given time,
then waits until the scheduler has judged every slot up to the end and every job is final. Every
slot must end with exactly one AUTOMATIC job or inside one recorded skip (``skipped_runs``):
0 missed without a record, 0 duplicates, and no automatic job off the schedule's grid.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.database import connect, create_user
from bench.environment import Infrastructure
from bench.measure import RssSampler, wait_for
from bench.stack import Service, Stack
from chronoverse import lifecycle
from chronoverse.postgres import Conn
from chronoverse.sql import Queries

QUERIES = Queries.load(Path(__file__).with_name("queries.sql"))
SERVICES = ("server", "scheduling-worker", "workflow-worker", "execution-worker", "log-processor")
LAG_FRACTIONS = (0.5, 0.99)
# The first slots start this long after the insert, so the stack is idle when they come due.
LEAD_S = 5.0


@dataclass(frozen=True, kw_only=True)
class SlotCount:
    """How schedule slots ended: with a job, a recorded skip, or neither."""

    slots: int
    ran: int
    skipped: int
    skipped_missed: int = 0
    skipped_overlap: int = 0
    missed: int  # neither a job nor a skip: lost without a record
    duplicated: int  # a job and a skip, or two skips
    off_grid: int  # an automatic job whose scheduled_at is not a slot

    def violations(self) -> list[str]:
        out = []
        if self.missed:
            out.append(f"{self.missed} of {self.slots} schedule slots have no job and no skip")
        if self.duplicated:
            out.append(f"{self.duplicated} schedule slots have both a job and a skip, or two skips")
        if self.off_grid:
            out.append(f"{self.off_grid} automatic jobs are not on a schedule slot")
        return out


def slot_count(
    conn: Conn, until: datetime, workflow_ids: Sequence[uuid.UUID | str] | None = None
) -> SlotCount:
    """Account for the slots up to ``until`` of the given interval workflows (None: all)."""
    ids = None if workflow_ids is None else [str(w) for w in workflow_ids]
    row = conn.execute(QUERIES.slot_count, {"until": until, "workflow_ids": ids}).fetchone()
    assert row is not None
    return SlotCount(**{k: int(v) for k, v in row.items()})


@dataclass(frozen=True, kw_only=True)
class SoakOptions:
    workflows: int
    minutes: float
    interval: int
    execution_workers: int
    concurrency: int
    run_dir: Path  # service logs


@dataclass(kw_only=True)
class SoakResult:
    started_at: str
    ended_at: str
    options: dict[str, Any]
    slots: SlotCount | None = None
    skip_records_slots: int = 0
    jobs: dict[str, int] = field(default_factory=dict)
    jobs_per_s: float = 0.0
    creation_lag_s: dict[str, float] = field(default_factory=dict)
    start_lag_s: dict[str, float] = field(default_factory=dict)
    drain_s: float = 0.0
    rss_peak_mb: dict[str, float] = field(default_factory=dict)
    error_log_lines: dict[str, int] = field(default_factory=dict)
    load_average: list[float] = field(default_factory=list)  # 1-min, at each progress line
    violations: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def run(infra: Infrastructure, options: SoakOptions, progress: Callable[[str], None]) -> SoakResult:
    database_url = infra.create_database()
    stack = Stack(
        infra.environ,
        database_url,
        options.run_dir,
        label="soak",
        CHRONOVERSE_LOG_LEVEL="INFO",
        CHRONOVERSE_KAFKA_FETCH_WAIT_MAX_MS="20",
    )
    infra.create_topics(stack.topic_prefix)
    services = [Service(name=n, service=n) for n in SERVICES if n != "execution-worker"] + [
        Service(
            name=f"execution-worker-{i + 1}",
            service="execution-worker",
            env={"CHRONOVERSE_CONCURRENCY": str(options.concurrency)},
        )
        for i in range(options.execution_workers)
    ]
    progress(f"starting the stack ({len(services)} processes, logs in {options.run_dir})")
    with stack, connect(database_url) as conn:
        stack.start_all(services)
        return _soak(conn, stack, options, progress)


def _soak(
    conn: Conn, stack: Stack, options: SoakOptions, progress: Callable[[str], None]
) -> SoakResult:
    user_id = create_user(conn)
    start = datetime.now(UTC) + timedelta(seconds=LEAD_S)
    end = start + timedelta(minutes=options.minutes)
    result = SoakResult(
        started_at=start.isoformat(),
        ended_at=end.isoformat(),
        options={k: str(v) for k, v in asdict(options).items()},
    )
    with conn.transaction():
        conn.execute(
            QUERIES.insert_liveness_workflows,
            {
                "user_id": user_id,
                "count": options.workflows,
                "interval": options.interval,
                "start": start,
            },
        )
        lifecycle.wake_scheduler(conn)
    progress(
        f"{options.workflows:,} interval-{options.interval} liveness workflows, first slots from "
        f"{start:%H:%M:%S}; running until {end:%H:%M:%S} UTC"
    )
    with RssSampler(stack.pids(), interval_s=1.0) as sampler:
        while datetime.now(UTC) < end:
            time.sleep(min(30.0, max(0.0, (end - datetime.now(UTC)).total_seconds())))
            stack.check_alive()
            row = conn.execute(QUERIES.progress).fetchone()
            assert row is not None
            result.load_average.append(round(os.getloadavg()[0], 2))
            progress(
                f"{datetime.now(UTC):%H:%M:%S}: load {result.load_average[-1]}, "
                f"{row['jobs']:,} jobs, {row['completed']:,} "
                f"completed, {row['failed']:,} failed, {row['active']:,} active, "
                f"{row['skips']:,} skip records"
            )
        drain_started = time.monotonic()
        wait_for(
            lambda: bool(
                (r := conn.execute(QUERIES.caught_up, {"until": end}).fetchone()) and r["done"]
            ),
            timeout_s=300,
            interval_s=0.5,
            what="the scheduler to judge every slot up to the end and every job to finish",
        )
        result.drain_s = time.monotonic() - drain_started
    result.rss_peak_mb = {name: round(mb, 1) for name, mb in sampler.peak.items()}
    result.slots = slot_count(conn, end)  # before terminating, which ends the schedules early
    conn.execute(QUERIES.terminate_all)
    row = conn.execute(QUERIES.skipped_slot_sum).fetchone()
    result.skip_records_slots = int(row["slots"]) if row else 0
    result.jobs = {
        r["status"]: int(r["n"]) for r in conn.execute(QUERIES.job_statuses, {"until": end})
    }
    result.jobs_per_s = sum(result.jobs.values()) / (end - start).total_seconds()
    lags = conn.execute(QUERIES.lags, {"fractions": list(LAG_FRACTIONS), "until": end}).fetchone()
    if lags is not None and lags["created"] is not None:
        result.creation_lag_s = _percentiles(lags["created"])
        result.start_lag_s = _percentiles(lags["started"])
        result.start_lag_s["max"] = round(float(lags["started_max"]), 3)
    result.error_log_lines = _error_lines(options.run_dir)
    result.violations = result.slots.violations()
    unfinished = {s: n for s, n in result.jobs.items() if s != "COMPLETED"}
    if unfinished:
        result.violations.append(f"jobs that did not complete: {unfinished}")
    return result


def _percentiles(values: Sequence[float]) -> dict[str, float]:
    names = [f"p{round(f * 100)}" for f in LAG_FRACTIONS]
    return {name: round(float(v), 3) for name, v in zip(names, values, strict=True)}


def _error_lines(log_dir: Path) -> dict[str, int]:
    """ERROR records in each service's JSON log."""
    counts = {}
    for log in sorted(log_dir.glob("*.log")):
        text = log.read_text(errors="replace")
        counts[log.stem] = sum(1 for line in text.splitlines() if '"level": "ERROR"' in line)
    return counts


def write(result: SoakResult, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = directory / f"soak-{stamp}.json"
    path.write_text(json.dumps(result.to_json(), indent=2, default=str) + "\n")
    return path


def report(result: SoakResult) -> str:
    """A Markdown table of the figures."""
    slots = result.slots
    rows: list[tuple[str, str]] = [("window", f"{result.started_at} .. {result.ended_at}")]
    if slots is not None:
        rows += [
            ("slots due in the window", f"{slots.slots:,}"),
            ("slots that ran (one AUTOMATIC job)", f"{slots.ran:,}"),
            (
                "slots skipped with a record",
                f"{slots.skipped:,} (MISSED {slots.skipped_missed:,}, "
                f"OVERLAP {slots.skipped_overlap:,})",
            ),
            ("slots missed without a record", f"{slots.missed:,}"),
            ("slots with a duplicate (job + skip, or two skips)", f"{slots.duplicated:,}"),
            ("automatic jobs off the schedule's grid", f"{slots.off_grid:,}"),
        ]
    rows += [
        ("jobs by status", ", ".join(f"{k} {v:,}" for k, v in sorted(result.jobs.items()))),
        ("jobs/s over the window", f"{result.jobs_per_s:,.1f}"),
        ("slot to job created, p50 / p99 (s)", _pair(result.creation_lag_s)),
        (
            "slot to job started, p50 / p99 / max (s)",
            _pair(result.start_lag_s) + f" / {result.start_lag_s.get('max', float('nan')):.3f}",
        ),
        ("drain after the window (s)", f"{result.drain_s:.1f}"),
        (
            "machine load average (1 min) during the window, mean / max",
            f"{sum(result.load_average) / max(1, len(result.load_average)):.2f} / "
            f"{max(result.load_average, default=0.0):.2f} (2 CPUs)",
        ),
        ("peak RSS (MiB)", ", ".join(f"{k} {v}" for k, v in result.rss_peak_mb.items())),
        (
            "ERROR log records",
            ", ".join(f"{k} {v}" for k, v in result.error_log_lines.items()),
        ),
        ("verdict", "PASS" if result.ok else "FAIL: " + "; ".join(result.violations)),
    ]
    lines = ["| figure | value |", "| --- | --- |"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    return "\n".join(lines)


def _pair(lags: dict[str, float]) -> str:
    return " / ".join(f"{lags[k]:.3f}" for k in ("p50", "p99") if k in lags) or "-"
