"""Fixtures of the chaos suite: its own infrastructure, the five services on it, and the load.

Started once per session and torn down even when a test fails: the services' logs, the
infrastructure's logs and ``results.jsonl`` (one report per fault) stay in
``.run/chaos/<UTC time>/``.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bench.stack import Service, Stack
from tests.chaos.harness import SERVICES, Chaos, Supervisor
from tests.chaos.infra import ChaosInfra, InfraError, sweep_stale
from tests.chaos.load import Load
from tests.chaos.recorder import ContainerRecorder
from tests.conftest import RUN_DIR, unavailable
from tests.factories import Endpoint

KEEP_RUNS = 3
# Short leases, backoffs and sweeps, so that recovery fits the suite's windows.
SETTINGS = {
    "CHRONOVERSE_LOG_LEVEL": "INFO",
    "CHRONOVERSE_LEASE_S": "4",
    "CHRONOVERSE_RETRY_BASE_DELAY_S": "0.5",
    "CHRONOVERSE_RETRY_MAX_DELAY_S": "2",
    "CHRONOVERSE_REAPER_INTERVAL_S": "1",
    "CHRONOVERSE_STOP_GRACE_S": "1",
    "CHRONOVERSE_SHUTDOWN_GRACE_S": "5",
    "CHRONOVERSE_REQUEUE_AFTER_S": "10",
    "CHRONOVERSE_SWEEP_INTERVAL_S": "1",
    "CHRONOVERSE_PUBLISH_TIMEOUT_S": "3",
    "CHRONOVERSE_VOLUME_SWEEP_INTERVAL_S": "5",
    # A poison message is dead-lettered after 0.5+1+2+4+8 s of retries (default: about 5 min),
    # still longer than the outages injected here.
    "CHRONOVERSE_KAFKA_HANDLER_RETRIES": "5",
    "CHRONOVERSE_KAFKA_HANDLER_RETRY_BASE_DELAY_S": "0.5",
}

_chaos: list[Chaos] = []


def _log_dir() -> Path:
    parent = RUN_DIR / "chaos"
    parent.mkdir(parents=True, exist_ok=True)
    for old in sorted(p for p in parent.iterdir() if p.is_dir())[: -(KEEP_RUNS - 1) or None]:
        shutil.rmtree(old, ignore_errors=True)
    path = parent / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path.mkdir()
    return path


@pytest.fixture(scope="session")
def chaos_infra() -> Iterator[ChaosInfra]:
    sweep_stale()  # what a session killed before its teardown left
    infra = ChaosInfra()
    try:
        try:
            infra.start()
        except InfraError as exc:
            unavailable("the chaos suite's own infrastructure", exc)
        yield infra
    finally:
        infra.close()


@pytest.fixture(scope="session")
def chaos(environ: Mapping[str, str], chaos_infra: ChaosInfra) -> Iterator[Chaos]:
    log_dir = _log_dir()
    stack = Stack(
        {**environ, **chaos_infra.settings()},
        chaos_infra.postgres.url,
        log_dir,
        label="chaos",
        **SETTINGS,
    )
    with contextlib.ExitStack() as cleanup:
        # Undone in reverse order, each step whatever the others did.
        cleanup.callback(chaos_infra.copy_logs, log_dir)
        endpoint = cleanup.enter_context(Endpoint().serving())
        Chaos.create_topics_for(stack)
        recorder = ContainerRecorder(chaos_infra.dockerd)
        recorder.start()
        cleanup.callback(recorder.close)
        cleanup.callback(stack.stop_all)
        stack.start_all([Service(name=name, service=name) for name in SERVICES])
        supervisor = Supervisor(stack)
        supervisor.start()
        cleanup.callback(supervisor.close)
        load = Load(stack.api, endpoint.url)
        cleanup.callback(load.close)
        load.create_workflows()
        harness = Chaos(
            infra=chaos_infra,
            stack=stack,
            supervisor=supervisor,
            recorder=recorder,
            load=load,
            log_dir=log_dir,
        )
        cleanup.callback(harness.write_results)
        load.start()
        _chaos.append(harness)
        yield harness


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for harness in _chaos:
        terminalreporter.section("chaos: recovery per fault")
        terminalreporter.write_line(harness.summary())
        terminalreporter.write_line(f"logs and results.jsonl: {harness.log_dir}")
