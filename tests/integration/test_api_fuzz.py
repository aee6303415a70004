"""Property-based tests of the HTTP API from the OpenAPI document it serves, every check on.

Generated requests, valid and invalid, go over real HTTP to a real server with a real token, in
two ways: each operation alone, and chains that follow the document's links (create a workflow,
run it now, read the job and its logs, update, terminate, delete). Every schemathesis check runs
on every response: no 5xx, documented statuses, headers and bodies, schema-valid requests
accepted and schema-invalid ones refused, a required header's absence refused, auth enforced,
a created resource found and a deleted one gone. tests/integration/schemathesis.toml and
schemathesis_hooks.py hold the settings, and the few rules JSON Schema cannot state.

Small example counts keep this in the regular suite; raise CHRONOVERSE_FUZZ_EXAMPLES and
CHRONOVERSE_FUZZ_SCENARIOS for a longer hunt.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.config import SchemathesisConfig

from chronoverse.secrets import generate_key
from services.server.app import create_app
from services.server.context import ServerContext
from services.server.settings import Settings
from tests.integration.conftest import RunningServer, new_user

pytestmark = [
    pytest.mark.integration,
    # schemathesis leaves the client socket of a response to the garbage collector; that is the
    # test client's resource, not the server's.
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
]

EXAMPLES = int(os.environ.get("CHRONOVERSE_FUZZ_EXAMPLES", "20"))
SCENARIOS = int(os.environ.get("CHRONOVERSE_FUZZ_SCENARIOS", "40"))
CONFIG = SchemathesisConfig.from_dict(
    tomllib.loads((Path(__file__).with_name("schemathesis.toml")).read_text())
)
# The document is generated from the code, so it needs no running server to load; the test
# server's settings change nothing in it (a smaller body limit only means more 413s).
schema = schemathesis.openapi.from_dict(
    create_app(ServerContext(Settings(secret_keys=generate_key()))).openapi(), config=CONFIG
)


@pytest.fixture(scope="module")
def auth_headers(server: RunningServer) -> dict[str, str]:
    """A new user's token, sent with every request as `st run -H` sends it: the auth checks
    probe without it and with a wrong one."""
    with httpx.Client(base_url=server.http_url, timeout=30) as client:
        return new_user(client)[1]


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_each_operation_answers_as_documented(
    case: Any, server: RunningServer, auth_headers: dict[str, str]
) -> None:
    case.call_and_validate(base_url=server.http_url, headers=auth_headers)


def test_linked_operations_answer_as_documented(
    server: RunningServer, auth_headers: dict[str, str]
) -> None:
    class Scenarios(schema.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {"base_url": server.http_url, "headers": auth_headers}

        def after_call(self, response: Any, case: Any) -> None:
            super().after_call(response, case)
            if case.method == "POST" and case.path == "/workflows" and response.status_code == 201:
                # The workflow worker's part, so that scenarios go on to run jobs and read them.
                with psycopg.connect(server.database_url, autocommit=True) as db:
                    db.execute(
                        "UPDATE workflows SET build_status = 'COMPLETED' WHERE id = %s",
                        (response.json()["id"],),
                    )

    # One scenario per Hypothesis run: the server keeps its state, so what a scenario can draw
    # depends on the ones before it, which Hypothesis would take for a flaky strategy (the
    # schemathesis CLI restarts its run then). For the same reason nothing is replayed or shrunk.
    one_scenario = settings(
        max_examples=1,
        stateful_step_count=10,
        phases=[Phase.generate],
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    for _ in range(SCENARIOS):
        Scenarios.run(settings=one_scenario)
