"""The import rules in pyproject.toml ([tool.importlinter]) hold, and each one catches a breach."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "pyproject.toml"
# `lint-imports`, with the packages found from the working directory only: the editable install
# puts the project on sys.path, and `services` (a namespace package) would gather both trees.
RUN = f"""
import sys
sys.path[:] = [p for p in sys.path if p not in {{"", {str(ROOT)!r}}}]
from importlinter.cli import lint_imports_command
lint_imports_command()
"""


def lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    """`lint-imports` with the project's contracts, on the packages under ``cwd``."""
    return subprocess.run(
        [sys.executable, "-c", RUN, str(CONFIG), "--no-cache", "--no-logo"],
        cwd=cwd,
        env={**os.environ, "COLUMNS": "1000"},  # one line per contract in the summary
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def contract_names() -> list[str]:
    config = tomllib.loads(CONFIG.read_text())
    return [contract["name"] for contract in config["tool"]["importlinter"]["contracts"]]


def test_the_code_keeps_every_import_contract() -> None:
    result = lint_imports(ROOT)
    # On failure, lint-imports's report names each offending import and the chain behind it.
    assert result.returncode == 0, result.stdout + result.stderr
    for name in contract_names():
        assert f"{name} KEPT" in result.stdout


# A tree with the project's top-level packages and one breach of each rule.
BREACHES = {
    "chronoverse/__init__.py": "",
    "chronoverse/client.py": "import chronoverse.v1.api\n",  # allowed: the client
    "chronoverse/v1/__init__.py": "",
    "chronoverse/v1/api.py": "",
    "chronoverse/domain.py": "import services.server.app\n",  # the core imports a service
    "services/server/__init__.py": "",
    "services/server/grpc/__init__.py": "import chronoverse.v1.api\n",  # allowed: the gRPC edge
    "services/server/app.py": "import services.log_processor.worker\n",  # one service, another
    "services/server/routes.py": "import chronoverse.v1.api\n",  # the generated code elsewhere
    "services/server/store/__init__.py": "",
    "services/server/store/jobs.py": "import services.server.store.workflows\n",  # a cycle,
    "services/server/store/workflows.py": "import services.server.store.jobs\n",  # deep down
    "services/log_processor/__init__.py": "",
    "services/log_processor/worker.py": "import bench.stack\n",  # shipped code imports bench
    "bench/__init__.py": "",
    "bench/stack.py": "",
    "tests/__init__.py": "import chronoverse.v1.api\n",  # allowed: tests
}


def test_each_contract_catches_a_breach(tmp_path: Path) -> None:
    for path, text in BREACHES.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    result = lint_imports(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    names = contract_names()
    assert len(names) == 5
    for name in names:
        assert f"{name} BROKEN" in result.stdout, result.stdout
    assert "No cycles are allowed in services.server.store." in result.stdout
    # The allowed importers of the generated code are not reported; the route is.
    assert "services.server.routes -> chronoverse.v1.api" in result.stdout
    for allowed in ("chronoverse.client", "services.server.grpc ", "tests "):
        assert f"{allowed}-> chronoverse.v1" not in result.stdout
