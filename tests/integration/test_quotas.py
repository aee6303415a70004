"""Per-user quotas: workflows per user, active jobs per user (manual runs included), and manual
runs per minute, over HTTP and gRPC, each on a real server with small limits of its own.

Real Postgres and Redis; the servers listen on loopback only.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import httpx
import psycopg
import pytest
import uvicorn

from chronoverse.v1 import jobs_pb2, jobs_pb2_grpc, workflows_pb2, workflows_pb2_grpc
from services.server.app import create_app
from services.server.context import ServerContext
from services.server.grpc import create_grpc_server
from services.server.settings import Settings
from tests.conftest import wait_until
from tests.integration.conftest import free_port

pytestmark = pytest.mark.integration

WORKFLOW = {"name": "q", "kind": "HEARTBEAT", "payload": {}, "interval": 60}


class Served:
    """A server context with its own small limits, HTTP on a loopback port."""

    def __init__(self, context: ServerContext) -> None:
        self.context = context
        self.port = free_port()
        self.server = uvicorn.Server(
            uvicorn.Config(create_app(context), host="127.0.0.1", port=self.port, log_config=None)
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        wait_until(lambda: self.server.started, timeout_s=20, message="uvicorn to start")

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=30)

    def user(self) -> tuple[uuid.UUID, dict[str, str]]:
        email = f"quota-{uuid.uuid4().hex[:12]}@example.com"
        user = self.context.accounts.register(email, "correct horse")
        token = self.context.accounts.login(email, "correct horse").token
        return user.id, {"Authorization": f"Bearer {token}"}

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def serve(environ: Mapping[str, str], database_url: str) -> Iterator[Callable[..., Served]]:
    started: list[Served] = []

    def start(**overrides: str) -> Served:
        settings = Settings.from_environ(
            {
                **environ,
                "CHRONOVERSE_DATABASE_URL": database_url,
                "CHRONOVERSE_GRPC_HOST": "127.0.0.1",
                "CHRONOVERSE_GRPC_PORT": str(free_port()),
                **{f"CHRONOVERSE_{k.upper()}": v for k, v in overrides.items()},
            }
        )
        context = ServerContext(settings)
        context.open()
        started.append(Served(context))
        return started[-1]

    yield start
    for served in started:
        served.stop()
        served.context.close()


@pytest.fixture
def db(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        yield conn


def built_workflow(http: httpx.Client, auth: dict[str, str], db: psycopg.Connection[Any]) -> str:
    """A workflow whose build has COMPLETED (no workflow worker runs here), so it can run."""
    response = http.post("/workflows", json=WORKFLOW, headers=auth)
    assert response.status_code == 201, response.text
    workflow_id = str(response.json()["id"])
    db.execute("UPDATE workflows SET build_status = 'COMPLETED' WHERE id = %s", (workflow_id,))
    return workflow_id


def run(http: httpx.Client, auth: dict[str, str], workflow_id: str, key: str | None = None) -> Any:
    headers = {**auth, **({"Idempotency-Key": key} if key else {})}
    return http.post(f"/workflows/{workflow_id}/jobs", headers=headers)


# --- workflows per user -------------------------------------------------------------------------


def test_workflows_past_the_quota_are_refused_with_409(serve: Callable[..., Served]) -> None:
    served = serve(max_workflows_per_user="3")
    _, alice = served.user()
    _, bob = served.user()
    with served.client() as http:
        created = [http.post("/workflows", json=WORKFLOW, headers=alice) for _ in range(3)]
        assert [r.status_code for r in created] == [201, 201, 201]
        refused = http.post("/workflows", json=WORKFLOW, headers=alice)
        assert refused.status_code == 409
        error = refused.json()["error"]
        assert error["code"] == "quota_exceeded"
        assert "3 workflows" in error["message"] and "(3)" in error["message"]
        # Another user has a quota of their own.
        assert http.post("/workflows", json=WORKFLOW, headers=bob).status_code == 201
        # Deleting one makes room.
        gone = http.delete(f"/workflows/{created[0].json()['id']}", headers=alice)
        assert gone.status_code == 204
        assert http.post("/workflows", json=WORKFLOW, headers=alice).status_code == 201


def test_concurrent_creates_never_exceed_the_workflow_quota(
    serve: Callable[..., Served], db: psycopg.Connection[Any]
) -> None:
    served = serve(max_workflows_per_user="5")
    user_id, alice = served.user()

    def create(_: int) -> int:
        with served.client() as http:
            return http.post("/workflows", json=WORKFLOW, headers=alice).status_code

    with ThreadPoolExecutor(12) as pool:
        statuses = list(pool.map(create, range(12)))
    assert sorted(statuses) == [201] * 5 + [409] * 7
    row = db.execute("SELECT count(*) FROM workflows WHERE user_id = %s", (user_id,)).fetchone()
    assert row == (5,)


# --- active jobs per user -----------------------------------------------------------------------


def test_manual_runs_past_the_active_jobs_quota_are_refused_with_409(
    serve: Callable[..., Served], db: psycopg.Connection[Any]
) -> None:
    served = serve(max_active_jobs_per_user="2")
    user_id, alice = served.user()
    with served.client() as http:
        first, second = built_workflow(http, alice, db), built_workflow(http, alice, db)
        assert run(http, alice, first).status_code == 201
        assert run(http, alice, second).status_code == 201
        refused = run(http, alice, first)
        assert refused.status_code == 409
        assert refused.json()["error"]["code"] == "quota_exceeded"
        assert "2 jobs pending, queued or running" in refused.json()["error"]["message"]
        # An automatic job counts as well: with one job finished and an automatic one active,
        # the user is at the quota again.
        db.execute(
            "UPDATE jobs SET status = 'COMPLETED', finished_at = now() WHERE id = "
            "(SELECT id FROM jobs WHERE user_id = %s LIMIT 1)",
            (user_id,),
        )
        db.execute(
            "INSERT INTO jobs (workflow_id, user_id, trigger, scheduled_at) "
            "VALUES (%s, %s, 'AUTOMATIC', now())",
            (second, user_id),
        )
        assert run(http, alice, first).status_code == 409
        db.execute(
            "UPDATE jobs SET status = 'FAILED', finished_at = now() "
            "WHERE user_id = %s AND trigger = 'AUTOMATIC'",
            (user_id,),
        )
        assert run(http, alice, first).status_code == 201
    row = db.execute(
        "SELECT count(*) FROM jobs WHERE user_id = %s AND status = 'PENDING'", (user_id,)
    ).fetchone()
    assert row == (2,)


def test_concurrent_manual_runs_never_exceed_the_active_jobs_quota(
    serve: Callable[..., Served], db: psycopg.Connection[Any]
) -> None:
    served = serve(max_active_jobs_per_user="4")
    user_id, alice = served.user()
    with served.client() as http:
        workflow_id = built_workflow(http, alice, db)

    def start(_: int) -> int:
        with served.client() as http:
            return int(run(http, alice, workflow_id).status_code)

    with ThreadPoolExecutor(10) as pool:
        statuses = list(pool.map(start, range(10)))
    assert sorted(statuses) == [201] * 4 + [409] * 6
    row = db.execute("SELECT count(*) FROM jobs WHERE user_id = %s", (user_id,)).fetchone()
    assert row == (4,)


# --- manual runs per minute ---------------------------------------------------------------------


def test_manual_runs_past_the_rate_get_429_and_replays_do_not_count(
    serve: Callable[..., Served], db: psycopg.Connection[Any]
) -> None:
    served = serve(manual_runs_per_minute="3")
    _, alice = served.user()
    _, bob = served.user()
    with served.client() as http:
        workflow_id = built_workflow(http, alice, db)
        assert run(http, alice, workflow_id, key="one").status_code == 201
        assert run(http, alice, workflow_id, key="two").status_code == 201
        # The same key again is the stored answer replayed: not a run, not counted.
        for _ in range(3):
            replay = run(http, alice, workflow_id, key="one")
            assert replay.status_code == 201
            assert replay.headers["Idempotent-Replayed"] == "true"
        assert run(http, alice, workflow_id, key="three").status_code == 201
        limited = run(http, alice, workflow_id, key="four")
        assert limited.status_code == 429
        assert limited.json()["error"]["code"] == "rate_limited"
        assert "CHRONOVERSE_MANUAL_RUNS_PER_MINUTE" in limited.json()["error"]["message"]
        assert 1 <= int(limited.headers["Retry-After"]) <= 60
        # The refused run left nothing behind, and its key is free to use later.
        row = db.execute(
            "SELECT count(*) FROM jobs WHERE workflow_id = %s", (workflow_id,)
        ).fetchone()
        assert row == (3,)
        # Another user has a rate of their own.
        assert run(http, bob, built_workflow(http, bob, db)).status_code == 201


# --- gRPC answers the same refusals -------------------------------------------------------------


def test_grpc_quota_refusals_are_resource_exhausted(
    serve: Callable[..., Served], db: psycopg.Connection[Any]
) -> None:
    served = serve(max_workflows_per_user="1", max_active_jobs_per_user="1")
    _, alice = served.user()
    metadata = (("authorization", alice["Authorization"]),)
    server, _, port = create_grpc_server(served.context)
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            workflows = workflows_pb2_grpc.WorkflowServiceStub(channel)  # type: ignore[no-untyped-call]
            jobs = jobs_pb2_grpc.JobServiceStub(channel)  # type: ignore[no-untyped-call]
            request = workflows_pb2.CreateWorkflowRequest(name="q", kind="HEARTBEAT", interval=60)
            created = workflows.CreateWorkflow(request, metadata=metadata)
            with pytest.raises(grpc.RpcError) as too_many_workflows:
                workflows.CreateWorkflow(request, metadata=metadata)
            db.execute(
                "UPDATE workflows SET build_status = 'COMPLETED' WHERE id = %s", (created.id,)
            )
            jobs.RunWorkflow(jobs_pb2.RunWorkflowRequest(workflow_id=created.id), metadata=metadata)
            with pytest.raises(grpc.RpcError) as too_many_jobs:
                jobs.RunWorkflow(
                    jobs_pb2.RunWorkflowRequest(workflow_id=created.id), metadata=metadata
                )
    finally:
        server.stop(0).wait()
    for raised, words in ((too_many_workflows, "1 workflows"), (too_many_jobs, "1 jobs")):
        assert raised.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert words in str(raised.value.details())
