"""What must hold after a fault, as pure functions over what the suite read (no I/O).

Each check returns the violations it found, as sentences naming the job, so that a failing fault
says exactly which job broke which promise.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

FINAL = frozenset({"COMPLETED", "FAILED", "CANCELED"})
# Each line the chaos containers print: `line <n> <hostname>`; Docker sets a container's hostname
# to its short id, so a line names the container (the attempt) that printed it.
LINE = re.compile(r"^line (?P<n>[0-9]+) (?P<host>[0-9a-f]{12})$")


@dataclass(frozen=True, kw_only=True)
class JobState:
    id: UUID
    workflow_id: UUID
    kind: str
    status: str
    attempt: int
    exit_code: int | None
    error: str | None
    created_at: datetime
    finished_at: datetime | None
    logs_attempt: int | None
    logs_last_seq: int | None
    logs_closed: bool
    logs_incomplete: bool

    @property
    def final(self) -> bool:
        return self.status in FINAL

    @property
    def logs_settled(self) -> bool:
        """The final attempt's log is closed (its end marker stored) or marked incomplete."""
        if self.kind != "CONTAINER" or self.attempt == 0:
            return True  # nothing ran, so no log is owed
        closed_this_attempt = self.logs_closed and (self.logs_attempt or 1) == self.attempt
        return closed_this_attempt or self.logs_incomplete

    def outcome(self) -> tuple[str, int | None, int]:
        return (self.status, self.exit_code, self.attempt)


@dataclass(frozen=True, kw_only=True)
class StoredLine:
    attempt: int
    seq: int
    stream: str
    line: str


@dataclass(frozen=True, kw_only=True)
class ContainerLife:
    """One container of a job, from Docker's `start` and `die` events (nanoseconds)."""

    container_id: str
    job_id: UUID
    started_ns: int
    died_ns: int | None  # None: still running, as far as the events tell


def unfinished(jobs: Iterable[JobState]) -> list[str]:
    return [
        f"job {j.id} ({j.kind}) is still {j.status} (attempt {j.attempt})"
        for j in jobs
        if not j.final
    ]


def unsettled_logs(jobs: Iterable[JobState]) -> list[str]:
    return [
        f"job {j.id} is {j.status} (attempt {j.attempt}) but its log is neither closed nor "
        f"marked incomplete (closed for attempt {j.logs_attempt}, last seq {j.logs_last_seq})"
        for j in jobs
        if j.final and not j.logs_settled
    ]


def changed_outcomes(
    before: Mapping[UUID, tuple[str, int | None, int]], jobs: Iterable[JobState]
) -> list[str]:
    """A job seen final must keep that outcome: one final state, never rewritten."""
    out = []
    for job in jobs:
        seen = before.get(job.id)
        if seen is not None and seen != job.outcome():
            out.append(f"job {job.id} was final as {seen}, now {job.outcome()}")
    return out


def missing_jobs(committed: Iterable[UUID], stored: set[UUID]) -> list[str]:
    """Every job the API answered 201 for exists."""
    return [f"job {job_id} was created (201) but is not in Postgres" for job_id in committed
            if job_id not in stored]  # fmt: skip


def overlapping_runs(lives: Iterable[ContainerLife]) -> list[str]:
    """No two containers of one job ran at the same time."""
    by_job: dict[UUID, list[ContainerLife]] = {}
    for life in lives:
        by_job.setdefault(life.job_id, []).append(life)
    out = []
    for job_id, runs in by_job.items():
        runs.sort(key=lambda life: life.started_ns)
        for earlier, later in itertools.pairwise(runs):
            if earlier.died_ns is None or earlier.died_ns > later.started_ns:
                ended = (
                    "no exit was seen"
                    if earlier.died_ns is None
                    else f"it exited {(earlier.died_ns - later.started_ns) / 1e9:.2f}s later"
                )
                out.append(
                    f"job {job_id} ran twice at once: container {earlier.container_id[:12]} "
                    f"was still running when container {later.container_id[:12]} started "
                    f"({ended})"
                )
    return out


def shortest_gap(lives: Iterable[ContainerLife]) -> float | None:
    """The shortest time (s) from one container's exit to the next start of the same job's."""
    by_job: dict[UUID, list[ContainerLife]] = {}
    for life in lives:
        by_job.setdefault(life.job_id, []).append(life)
    gaps = [
        (later.started_ns - earlier.died_ns) / 1e9
        for runs in by_job.values()
        for earlier, later in itertools.pairwise(sorted(runs, key=lambda x: x.started_ns))
        if earlier.died_ns is not None
    ]
    return min(gaps, default=None)


def left_behind(labelled: Mapping[str, UUID], jobs: Mapping[UUID, JobState]) -> list[str]:
    """No container remains for a job that is final (``labelled``: container id -> job id)."""
    return [
        f"container {container_id[:12]} of {jobs[job_id].status} job {job_id} is left behind"
        for container_id, job_id in labelled.items()
        if job_id in jobs and jobs[job_id].final
    ]


def log_violations(
    job: JobState,
    lines: Sequence[StoredLine],
    *,
    expected_lines: int,
    final_container: str | None,
    incomplete_allowed: bool,
) -> list[str]:
    """The final attempt's stored log is its own lines, each once and in order.

    ``final_container`` is the id of the container that ran the final attempt (from Docker's
    events), when known; every stored line of that attempt must name it.
    """
    if job.kind != "CONTAINER" or not job.final or job.attempt == 0:
        return []
    out: list[str] = []
    later = sorted({line.attempt for line in lines if line.attempt > job.attempt})
    if later:
        out.append(
            f"job {job.id}: lines stored for attempts {later}, after its final {job.attempt}"
        )
    mine = sorted((line for line in lines if line.attempt == job.attempt), key=lambda x: x.seq)
    hosts: set[str] = set()
    for line in mine:
        match = LINE.match(line.line)
        if match is None or line.stream != "stdout":
            out.append(f"job {job.id}: unexpected line at seq {line.seq}: {line.line!r}")
            continue
        hosts.add(match["host"])
        if int(match["n"]) != line.seq + 1:
            out.append(
                f"job {job.id} attempt {job.attempt}: seq {line.seq} holds {line.line!r} "
                f"(expected line {line.seq + 1}): out of order or spliced"
            )
    if len(hosts) > 1:
        out.append(
            f"job {job.id} attempt {job.attempt}: lines of several containers are mixed: "
            f"{sorted(hosts)}"
        )
    if final_container is not None and hosts and hosts != {final_container[:12]}:
        out.append(
            f"job {job.id} attempt {job.attempt}: lines come from {sorted(hosts)}, not from the "
            f"attempt's container {final_container[:12]}"
        )
    seqs = [line.seq for line in mine]
    contiguous = seqs == list(range(len(seqs)))
    if job.logs_incomplete:
        if not incomplete_allowed:
            out.append(
                f"job {job.id} ({job.status}): its log is marked incomplete "
                f"({len(seqs)} of {expected_lines} lines stored)"
            )
        return out
    if not contiguous:
        gaps = sorted(set(range(max(seqs, default=-1) + 1)) - set(seqs))
        out.append(
            f"job {job.id} attempt {job.attempt}: seqs not contiguous from 0, missing {gaps[:10]} "
            "and not marked incomplete"
        )
    if job.logs_last_seq is not None and job.logs_last_seq != len(seqs) - 1:
        out.append(
            f"job {job.id} attempt {job.attempt}: end marker says last seq {job.logs_last_seq}, "
            f"{len(seqs)} lines stored, not marked incomplete"
        )
    if job.status == "COMPLETED" and len(seqs) != expected_lines:
        out.append(
            f"job {job.id} COMPLETED with {len(seqs)} of {expected_lines} lines stored, "
            "not marked incomplete"
        )
    return out
