"""The chaos harness: a supervisor for the five services, fault phases, and judging each one.

A fault runs as a phase: inject it, note when it ended (the restart), then :meth:`Chaos.recover`
waits until every service answers /readyz and every job committed before the end of the fault is
final with its log settled, each within its window, and checks the promises of
:mod:`tests.chaos.checks` on the jobs of the phase. The result is a :class:`FaultReport`, kept in
``results.jsonl`` next to the services' logs.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, LiteralString
from uuid import UUID

import psycopg
from psycopg.rows import dict_row

from bench.database import connect
from bench.soak import SlotCount, slot_count
from bench.stack import BIN, Stack, is_ready
from chronoverse.sql import Queries
from tests.chaos import checks
from tests.chaos.checks import JobState, StoredLine
from tests.chaos.infra import ChaosInfra
from tests.chaos.load import Load
from tests.chaos.recorder import ContainerRecorder

QUERIES = Queries.load(Path(__file__).with_name("queries.sql"))
SERVICES = ("server", "scheduling-worker", "workflow-worker", "execution-worker", "log-processor")
RESTART_DELAY_S = 1.0  # the supervisor restarts a process that exited this long after (systemd's)
SLOT_GRACE_S = 5.0  # a slot this old must have been judged by the scheduler
SLOT_WINDOW_S = 30.0  # ... at the latest this long after the phase's jobs settled


@dataclass(frozen=True, kw_only=True)
class Exit:
    name: str
    returncode: int | None
    at: float  # time.monotonic()


class Supervisor:
    """Restarts a service process that exited on its own, as systemd or Kubernetes would, and
    records the exit: a fault must not make a service exit, let alone crash-loop."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.exits: list[Exit] = []
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="supervisor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def kill(self, name: str) -> None:
        """``kill -9``: the process is gone without cleanup (an expected exit)."""
        with self._lock:
            self.stack.kill(name)

    def spawn(self, name: str) -> None:
        with self._lock:
            self.stack.spawn(name, name)

    def names(self) -> list[str]:
        with self._lock:
            return list(self.stack.processes)

    def pid(self, name: str) -> int:
        with self._lock:
            return self.stack.processes[name].pid

    def _watch(self) -> None:
        while not self._stop.wait(0.2):
            with self._lock:
                dead = [
                    (name, process.returncode)
                    for name, process in self.stack.processes.items()
                    if process.poll() is not None
                ]
            for name, code in dead:
                self.exits.append(Exit(name=name, returncode=code, at=time.monotonic()))
                self._stop.wait(RESTART_DELAY_S)
                with self._lock:
                    process = self.stack.processes.get(name)
                    if process is not None and process.poll() is not None:
                        self.stack.spawn(name, name)


@dataclass(kw_only=True)
class Fault:
    name: str
    began: float = field(default_factory=time.monotonic)
    ended_at: datetime | None = None  # wall clock, to compare with created_at in Postgres
    ended: float | None = None  # monotonic

    def end(self) -> None:
        """The fault is over (the process or the dependency was started again)."""
        self.ended = time.monotonic()
        self.ended_at = datetime.now(UTC)


@dataclass(kw_only=True)
class FaultReport:
    fault: str
    ended_at: str  # when the fault ended (UTC), to find its records in the logs
    ready_window_s: float
    settle_window_s: float
    ready_s: float | None = None  # until every service answered /readyz 200
    settled_s: float | None = None  # until every job committed before the end was final
    jobs_judged: int = 0
    container_jobs_judged: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)  # FAILED jobs by error
    container_runs: int = 0  # containers started for the phase's jobs
    jobs_run_twice: int = 0  # jobs with more than one container (one after the other)
    logs_incomplete: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    def text(self) -> str:
        ready = f"{self.ready_s:.1f}s" if self.ready_s is not None else "NOT READY"
        settled = f"{self.settled_s:.1f}s" if self.settled_s is not None else "NOT SETTLED"
        lines = [
            f"{self.fault}: ready after {ready} (window {self.ready_window_s:.0f}s), jobs settled "
            f"after {settled} (window {self.settle_window_s:.0f}s); judged {self.jobs_judged} "
            f"jobs ({self.container_jobs_judged} CONTAINER): {self.outcomes}; "
            f"{self.container_runs} containers, {self.jobs_run_twice} jobs re-run, "
            f"{self.logs_incomplete} logs marked incomplete"
            + (f"; {self.extra}" if self.extra else ""),
            *(f"  failed: {n} x {error}" for error, n in self.failures.items()),
            *(f"  VIOLATION {v}" for v in self.violations[:40]),
        ]
        if len(self.violations) > 40:
            lines.append(f"  ... and {len(self.violations) - 40} more")
        lines += [f"  evidence: {e}" for e in self.evidence[:20]]
        return "\n".join(lines)


class Database:
    """Short connections to the chaos Postgres: each read survives a restart in between."""

    def __init__(self, url: str) -> None:
        self.url = url

    def rows(
        self, query: LiteralString, params: Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + 60
        while True:
            try:
                with psycopg.connect(self.url, row_factory=dict_row, connect_timeout=3) as conn:
                    return list(conn.execute(query, params or {}).fetchall())
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)


class Chaos:
    def __init__(
        self,
        *,
        infra: ChaosInfra,
        stack: Stack,
        supervisor: Supervisor,
        recorder: ContainerRecorder,
        load: Load,
        log_dir: Path,
    ) -> None:
        self.infra = infra
        self.stack = stack
        self.supervisor = supervisor
        self.recorder = recorder
        self.load = load
        self.log_dir = log_dir
        self.db = Database(stack.env["CHRONOVERSE_DATABASE_URL"])
        self.reports: list[FaultReport] = []
        self._judged_until = datetime.fromtimestamp(0, UTC)
        self._open: set[UUID] = set()  # jobs not final when last judged
        self._outcomes: dict[UUID, tuple[str, int | None, int]] = {}
        self._reported_overlaps: set[str] = set()
        self._reported_missing: set[UUID] = set()
        self._exits_seen = 0

    # --- faults -----------------------------------------------------------------------------------

    @contextlib.contextmanager
    def fault(self, name: str) -> Iterator[Fault]:
        fault = Fault(name=name)
        yield fault
        if fault.ended is None:
            fault.end()

    def create_topics(self) -> None:
        """What an operator's init does after the broker lost its data: `chronoverse topics
        create` (the scheduling worker would also re-create missing topics on its own)."""
        self.create_topics_for(self.stack)

    @staticmethod
    def create_topics_for(stack: Stack) -> None:
        subprocess.run(
            [str(BIN / "chronoverse"), "topics", "create"],
            env=dict(stack.env),
            check=True,
            capture_output=True,
            timeout=60,
        )

    def long_job_running(self, *, for_s: float = 1.0, timeout_s: float = 60.0) -> UUID:
        """Run the long CONTAINER job now; its id once it has been RUNNING for ``for_s``."""
        assert self.load.workflows is not None
        workflow = self.load.workflows.long_container
        deadline = time.monotonic() + timeout_s
        job_id = None
        while job_id is None:
            job_id = self.load.trigger(workflow)
            if time.monotonic() > deadline:
                raise AssertionError("could not start the long CONTAINER job")
        while time.monotonic() < deadline:
            rows = self.db.rows(
                QUERIES.running_container_jobs, {"workflow_ids": [workflow], "for_s": for_s}
            )
            if job_id in {row["id"] for row in rows}:
                return job_id
            time.sleep(0.2)
        raise AssertionError(f"the long CONTAINER job {job_id} did not run; see {self.log_dir}")

    def build_status(self, workflow_id: str, *, since: float | None, window_s: float) -> str:
        """The workflow's build status once COMPLETED or FAILED, or when the window ends."""
        deadline = (since or time.monotonic()) + window_s
        while True:
            (row,) = self.db.rows(QUERIES.workflow_built, {"id": workflow_id})
            status = str(row["build_status"])
            if status in {"COMPLETED", "FAILED"} or time.monotonic() > deadline:
                return status
            time.sleep(0.5)

    def log_shipping_recovered(
        self, fault: Fault, *, window_s: float
    ) -> tuple[float | None, datetime]:
        """After a fault that can lose log lines: the first CONTAINER job created after it from
        which on no job's lines were lost (its log complete, and no later job's marked
        incomplete), as seconds after the end of the fault, and its creation time (None and
        the end of the fault when that does not happen within ``window_s``)."""
        assert fault.ended is not None and fault.ended_at is not None
        deadline = fault.ended + window_s
        while time.monotonic() < deadline:
            rows = self.db.rows(QUERIES.log_shipping_recovered, {"after": fault.ended_at})
            if rows:
                recovered: datetime = rows[0]["recovered_at"]
                return (recovered - fault.ended_at).total_seconds(), recovered
            time.sleep(1)
        return None, fault.ended_at

    # --- judging ----------------------------------------------------------------------------------

    def ready_times(self, *, since: float, window_s: float) -> tuple[float | None, list[str]]:
        """Seconds from ``since`` until every service answered /readyz 200 (None: not in time)."""
        deadline = since + window_s
        pending = set(SERVICES)
        while True:
            for name in sorted(pending):
                port = self.stack.health_ports.get(name)
                if name in self.supervisor.names() and port is not None and is_ready(port):
                    pending.discard(name)
            if not pending:
                took = time.monotonic() - since
                late = [f"ready only {took:.1f}s after the fault (window {window_s:.0f}s)"]
                return took, late if took > window_s else []
            if time.monotonic() > deadline:
                return None, [
                    f"{name} not ready {window_s:.0f}s after the fault: {self._readyz(name)}"
                    for name in sorted(pending)
                ]
            time.sleep(0.2)

    def _readyz(self, name: str) -> str:
        import urllib.error
        import urllib.request

        port = self.stack.health_ports.get(name)
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=3) as response:
                return str(response.read().decode()[:500])
        except urllib.error.HTTPError as exc:
            return f"{exc.code} {exc.read().decode()[:500]}"
        except OSError as exc:
            return f"no answer ({exc})"

    def job_states(self, until: datetime) -> dict[UUID, JobState]:
        return {
            row["id"]: JobState(**row) for row in self.db.rows(QUERIES.job_states, {"until": until})
        }

    def settle(
        self, cutoff: datetime, *, since: float, window_s: float
    ) -> tuple[float | None, dict[UUID, JobState]]:
        """Wait until every job created up to ``cutoff`` is final with its log settled."""
        deadline = since + window_s
        while True:
            jobs = self.job_states(cutoff)
            if all(j.final and j.logs_settled for j in jobs.values()):
                return time.monotonic() - since, jobs
            if time.monotonic() > deadline:
                return None, jobs
            time.sleep(0.5)

    def recover(
        self,
        fault: Fault,
        *,
        ready_window_s: float = 30.0,
        settle_window_s: float = 60.0,
        incomplete_allowed: bool = False,
        expected_exits: int = 0,
        cutoff: Callable[[], datetime] | None = None,
    ) -> FaultReport:
        """Wait for recovery after ``fault``, then judge every job of the phase: the jobs
        created up to ``cutoff()`` (asked once every service is ready; default: the end of the
        fault) and not judged before."""
        assert fault.ended is not None and fault.ended_at is not None
        report = FaultReport(
            fault=fault.name,
            ended_at=fault.ended_at.isoformat(),
            ready_window_s=ready_window_s,
            settle_window_s=settle_window_s,
        )
        report.ready_s, not_ready = self.ready_times(since=fault.ended, window_s=ready_window_s)
        report.violations += not_ready
        until = cutoff() if cutoff is not None else fault.ended_at
        report.settled_s, jobs = self.settle(until, since=fault.ended, window_s=settle_window_s)
        # Still ready at the end of the window: a consumer left without an assignment must
        # have turned not ready by now.
        _, not_ready = self.ready_times(since=time.monotonic(), window_s=5.0)
        report.violations += [f"at the end of the window: {v}" for v in not_ready]
        phase = {
            job_id: job
            for job_id, job in jobs.items()
            if job.created_at > self._judged_until or job_id in self._open
        }
        report.jobs_judged = len(phase)
        report.container_jobs_judged = sum(1 for j in phase.values() if j.kind == "CONTAINER")
        for job in phase.values():
            report.outcomes[job.status] = report.outcomes.get(job.status, 0) + 1
            if job.status == "FAILED":
                error = (job.error or "")[:120]
                report.failures[error] = report.failures.get(error, 0) + 1
        report.logs_incomplete = sum(1 for j in phase.values() if j.logs_incomplete)
        runs = [life for life in self.recorder.lives() if life.job_id in phase]
        report.container_runs = len(runs)
        per_job = Counter(life.job_id for life in runs)
        report.jobs_run_twice = sum(1 for n in per_job.values() if n > 1)
        gap = checks.shortest_gap(runs)
        if gap is not None:
            report.extra["shortest gap between a job's containers (s)"] = round(gap, 2)
        report.violations += checks.unfinished(phase.values())
        report.violations += checks.unsettled_logs(phase.values())
        report.violations += checks.changed_outcomes(self._outcomes, jobs.values())
        report.violations += self._log_checks(phase, incomplete_allowed=incomplete_allowed)
        report.violations += self._overlaps()
        report.violations += checks.left_behind(self.recorder.labelled(), jobs)
        report.violations += self._missing()
        report.violations += self._slots(until, report)
        report.violations += self._exits(expected_exits)
        report.evidence = self._evidence(report.violations)
        for job in jobs.values():
            if job.final:
                self._outcomes.setdefault(job.id, job.outcome())
        self._open = {job_id for job_id, job in jobs.items() if not job.final}
        self._judged_until = until
        self.reports.append(report)
        return report

    def _log_checks(self, jobs: dict[UUID, JobState], *, incomplete_allowed: bool) -> list[str]:
        assert self.load.workflows is not None
        expected = self.load.workflows.expected_lines
        containers = [j for j in jobs.values() if j.kind == "CONTAINER" and j.final]
        lines: dict[UUID, list[StoredLine]] = {j.id: [] for j in containers}
        for row in self.db.rows(QUERIES.logs_of, {"job_ids": list(lines)}):
            lines[row.pop("job_id")].append(StoredLine(**row))
        out = []
        for job in containers:
            out += checks.log_violations(
                job,
                lines[job.id],
                expected_lines=expected.get(job.workflow_id, 0),
                final_container=self.recorder.final_container(job.id),
                incomplete_allowed=incomplete_allowed,
            )
        return out

    def _overlaps(self) -> list[str]:
        out = []
        for violation in checks.overlapping_runs(self.recorder.lives()):
            if violation not in self._reported_overlaps:
                self._reported_overlaps.add(violation)
                out.append(violation)
        return out

    def _missing(self) -> list[str]:
        stored = {row["id"] for row in self.db.rows(QUERIES.job_ids)}
        missing = [
            job_id
            for job_id in self.load.committed_ids()
            if job_id not in stored and job_id not in self._reported_missing
        ]
        self._reported_missing.update(missing)
        return checks.missing_jobs(missing, stored)

    def slot_count(self, until: datetime) -> SlotCount:
        """How the interval workflows' slots up to ``until`` ended (the soak run's accounting)."""
        assert self.load.workflows is not None
        deadline = time.monotonic() + 60
        while True:
            try:
                with connect(self.db.url) as conn:
                    return slot_count(conn, until, self.load.workflows.interval)
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def _slots(self, cutoff: datetime, report: FaultReport) -> list[str]:
        """Slots up to the end of the fault that have no job and no skip, once the scheduler
        has had SLOT_WINDOW_S to catch up on them."""
        deadline = time.monotonic() + SLOT_WINDOW_S
        while True:
            until = min(cutoff, datetime.now(UTC) - timedelta(seconds=SLOT_GRACE_S))
            count = self.slot_count(until)
            violations = count.violations()
            if not violations or time.monotonic() > deadline:
                report.extra["slots so far (ran / skipped)"] = f"{count.ran} / {count.skipped}"
                return violations
            time.sleep(1)

    def _exits(self, expected: int) -> list[str]:
        exits = self.supervisor.exits[self._exits_seen :]
        self._exits_seen += len(exits)
        if len(exits) <= expected:
            return []
        return [
            f"{e.name} exited on its own with {e.returncode} (restarted by the supervisor)"
            for e in exits
        ]

    def _evidence(self, violations: list[str]) -> list[str]:
        """Log records (warnings and errors) of the services about the first jobs named."""
        ids = []
        for violation in violations:
            for word in violation.replace(",", " ").split():
                if len(word) == 36 and word.count("-") == 4 and word not in ids:
                    ids.append(word)
        found: list[str] = []
        for log in sorted(self.log_dir.glob("*.log")):
            for line in log.read_text(errors="replace").splitlines():
                if any(i in line for i in ids[:5]) and ('"WARNING"' in line or '"ERROR"' in line):
                    found.append(f"{log.stem}: {line[:400]}")
        for violation in violations:
            if "exited on its own" in violation:
                name = violation.split()[0]
                found += [
                    f"{name}: {line[:400]}"
                    for line in _tail(self.log_dir / f"{name}.log", 400)
                    if "Error" in line or "Traceback" in line
                ][-5:]
        return found[:20]

    def summary(self) -> str:
        return "\n".join(report.text() for report in self.reports)

    def write_results(self) -> None:
        """One JSON line per fault in ``results.jsonl`` (docs/reliability.md quotes them)."""
        with (self.log_dir / "results.jsonl").open("w") as out:
            for report in self.reports:
                out.write(json.dumps(asdict(report), default=str) + "\n")


def _tail(path: Path, lines: int) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return []
