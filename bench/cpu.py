"""CPU time of processes, from /proc: a stack's services and the infrastructure they run on.

A :class:`CpuMeter` reads ``utime + stime`` of every process it counts before and after some
work and sums the difference per program. It counts the stack's service processes (and their
children) under their service name without the instance number, so two execution workers add up
to one ``execution-worker``; Postgres as the backends of the stack's own database (but not the
bench's own connection, which seeds and polls) plus the server's background processes (WAL
writer, checkpointer, ...), not other databases' backends;
and ``redis-server`` and the broker (``tansu``) whole, which other users of the same
infrastructure share.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
TICKS_PER_S = os.sysconf("SC_CLK_TCK")
SHARED_PROGRAMS = {"redis-server": "redis", "tansu": "broker (tansu)"}
# Titles of the Postgres server's own processes (not a client's backend).
POSTGRES_BACKGROUND = re.compile(
    r"checkpointer|background writer|walwriter|autovacuum|logical replication|stats collector"
    r"|archiver|wal sender|wal receiver|startup|bin/postgres"
)
# "-1" after a service's name: the instance number of a second worker of the same kind.
INSTANCE = re.compile(r"-\d+$")


@dataclass(frozen=True, kw_only=True)
class _Process:
    pid: int
    ppid: int
    comm: str
    cpu_s: float


def _read(pid: int) -> _Process | None:
    """One process's parent, name and CPU seconds; None when it is gone."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The name is in parentheses and may hold spaces: the fields start after the last ")".
    comm = stat[stat.index("(") + 1 : stat.rindex(")")]
    fields = stat[stat.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state) of proc(5): ppid is 4, utime 14, stime 15.
    return _Process(
        pid=pid,
        ppid=int(fields[1]),
        comm=comm,
        cpu_s=(int(fields[11]) + int(fields[12])) / TICKS_PER_S,
    )


def _cmdline(pid: int) -> str:
    try:
        return (PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _all_processes() -> list[_Process]:
    found = (_read(int(entry.name)) for entry in PROC.iterdir() if entry.name.isdigit())
    return [process for process in found if process is not None]


def program_of(name: str) -> str:
    """A service's program from its process name: ``execution-worker-2`` is ``execution-worker``."""
    return INSTANCE.sub("", name)


def postgres_counted(title: str, database: str) -> bool:
    """Whether a Postgres process, by its title, works for ``database`` or for the server."""
    if POSTGRES_BACKGROUND.search(title):
        return True
    # A backend's title: "postgres: 15/main: <user> <database> <client> <state>".
    return database in title.split()


class CpuMeter:
    """CPU seconds per program between :meth:`start` and :meth:`stop`."""

    def __init__(
        self, services: Mapping[str, int], database: str, *, exclude: Collection[int] = ()
    ) -> None:
        self._services = {pid: program_of(name) for name, pid in services.items()}
        self._database = database
        self._exclude = set(exclude)
        self._before: dict[int, tuple[str, float]] = {}

    def _snapshot(self) -> dict[int, tuple[str, float]]:
        """Every counted process: its program and CPU seconds so far."""
        snapshot: dict[int, tuple[str, float]] = {}
        for process in _all_processes():
            program = self._program(process)
            if program is not None:
                snapshot[process.pid] = (program, process.cpu_s)
        return snapshot

    def _program(self, process: _Process) -> str | None:
        if process.pid in self._exclude:
            return None
        if process.pid in self._services:
            return self._services[process.pid]
        if process.ppid in self._services:
            return self._services[process.ppid]
        if process.comm in SHARED_PROGRAMS:
            return SHARED_PROGRAMS[process.comm]
        if process.comm == "postgres" and postgres_counted(_cmdline(process.pid), self._database):
            return "postgres"
        return None

    def start(self) -> None:
        self._before = self._snapshot()

    def stop(self) -> dict[str, float]:
        """CPU seconds per program since :meth:`start` (a process that ended meanwhile is lost;
        one that started counts from zero)."""
        used: dict[str, float] = {}
        for pid, (program, cpu_s) in self._snapshot().items():
            before = self._before.get(pid)
            spent = cpu_s - before[1] if before is not None and before[0] == program else cpu_s
            used[program] = used.get(program, 0.0) + spent
        return used
