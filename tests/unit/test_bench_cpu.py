"""The bench's CPU meter: reading /proc, and which processes it counts under which program."""

import subprocess
import sys

from bench.cpu import CpuMeter, postgres_counted, program_of

# Says it is ready, spins for 0.3 s of CPU when told to, says so, then waits for its end.
WORKER = """
import sys, time
print("ready", flush=True)
if sys.stdin.readline() == "spin\\n":
    end = time.process_time() + 0.3
    while time.process_time() < end:
        pass
print("done", flush=True)
sys.stdin.read()
"""


def test_instances_of_a_service_count_as_one_program() -> None:
    assert program_of("execution-worker-2") == "execution-worker"
    assert program_of("scheduling-worker") == "scheduling-worker"
    assert program_of("server") == "server"


def test_postgres_counts_its_own_database_and_the_servers_processes() -> None:
    mine = "postgres: 15/main: chronoverse cv_bench_1 127.0.0.1(5000) idle"
    other = "postgres: 15/main: chronoverse cv_bench_12 127.0.0.1(5002) idle"
    assert postgres_counted(mine, "cv_bench_1")
    assert not postgres_counted(other, "cv_bench_1")
    assert postgres_counted("postgres: 15/main: walwriter ", "cv_bench_1")
    assert postgres_counted("/usr/lib/postgresql/15/bin/postgres -D /var/lib/x", "cv_bench_1")


def _worker() -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-c", WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    assert process.stdout.readline() == "ready\n"
    return process


def _tell(process: subprocess.Popen[str], what: str) -> None:
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(what + "\n")
    process.stdin.flush()
    assert process.stdout.readline() == "done\n"


def test_cpu_spent_between_start_and_stop_is_counted_per_program() -> None:
    busy, idle = _worker(), _worker()
    try:
        meter = CpuMeter({"execution-worker-2": busy.pid, "server": idle.pid}, "cv_none")
        meter.start()
        _tell(busy, "spin")
        _tell(idle, "rest")
        used = meter.stop()
    finally:
        for process in (busy, idle):
            process.communicate("")
    assert 0.25 <= used["execution-worker"] < 1.0
    assert used["server"] < 0.1
