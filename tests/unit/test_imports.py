"""Services that run no containers must not pay for the Docker SDK (resident memory at rest)."""

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    "module",
    ["services.scheduling_worker.worker", "services.log_processor.worker", "services.server.app"],
)
def test_services_without_containers_do_not_import_docker(module: str) -> None:
    probe = f"import sys, {module}; print('docker' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True
    ).stdout
    assert out.strip() == "False"
