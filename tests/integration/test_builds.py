"""CONTAINER builds against real Postgres, Redis and Docker."""

from __future__ import annotations

import io
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import docker
import psycopg
import pytest
import redis
from psycopg.rows import dict_row

from chronoverse.definition_cache import DefinitionCache
from chronoverse.definitions import (
    LABEL_INSTALLATION,
    LABEL_JOB,
    LABEL_LEASE,
    cache_key,
)
from chronoverse.domain import WorkflowKind
from chronoverse.events import WorkflowEvent, WorkflowEventType
from chronoverse.payloads import ContainerPolicy
from chronoverse.postgres import Pool, create_pool
from chronoverse.secrets import SecretBox, generate_key, seal_payload
from chronoverse.settings import PostgresSettings
from services.execution_worker.reaper import Reaper
from services.workflow_worker.builds import Builder
from services.workflow_worker.images import Images
from tests.factories import make_user, make_workflow

pytestmark = pytest.mark.integration


@pytest.fixture
def pool(database_url: str) -> Iterator[Pool]:
    pool = create_pool(PostgresSettings(database_url=database_url), name="test-builds")
    yield pool
    pool.close()


@pytest.fixture
def conn(database_url: str) -> Iterator[psycopg.Connection[dict[str, Any]]]:
    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as conn:
        yield conn


BOX = SecretBox([generate_key()])


@pytest.fixture
def cache(redis_client: redis.Redis) -> DefinitionCache:
    return DefinitionCache(redis_client, BOX, ttl_s=600)


@pytest.fixture
def builder(
    pool: Pool,
    docker_client: docker.DockerClient,
    redis_client: redis.Redis,
    cache: DefinitionCache,
) -> Builder:
    return Builder(
        pool,
        Images(docker_client, redis_client),
        docker_client,
        cache,
        secrets=BOX,
        policy=ContainerPolicy(),
        installation=f"test-{uuid.uuid4().hex[:8]}",
    )


def container_workflow(conn: Any, image: str, **payload: Any) -> uuid.UUID:
    stored = seal_payload(
        BOX, WorkflowKind.CONTAINER, {"image": image, "command": ["echo", "hi"], **payload}, None
    )
    return make_workflow(
        conn, make_user(conn), kind="CONTAINER", build_status="QUEUED", payload=stored
    )


def event(
    workflow_id: uuid.UUID,
    generation: int = 1,
    kind: WorkflowEventType = WorkflowEventType.CREATED,
) -> WorkflowEvent:
    return WorkflowEvent(
        type=kind,
        workflow_id=workflow_id,
        user_id=uuid.uuid4(),  # the builder reads the owner from the workflow's row
        kind=WorkflowKind.CONTAINER,
        generation=generation,
    )


def build_state(conn: Any, workflow_id: uuid.UUID) -> tuple[str, str | None]:
    row = conn.execute(
        "SELECT build_status, build_error FROM workflows WHERE id = %s", (workflow_id,)
    ).fetchone()
    return row["build_status"], row["build_error"]


def test_a_local_image_builds_and_its_definition_is_cached(
    conn: Any,
    builder: Builder,
    redis_client: redis.Redis,
    docker_client: docker.DockerClient,
    cache: DefinitionCache,
) -> None:
    workflow_id = container_workflow(conn, "local/busybox:latest", env={"A": "s3cret-1"})
    builder.apply(event(workflow_id))
    assert build_state(conn, workflow_id) == ("COMPLETED", None)
    definition = cache.get(workflow_id, 1)
    assert definition is not None
    assert definition.image_id == docker_client.images.get("local/busybox:latest").id
    assert (definition.entrypoint, definition.env, definition.network) == (
        ["echo", "hi"],
        {"A": "s3cret-1"},
        "none",
    )
    # Sealed in Redis: the env value is not there in clear, and the entry expires.
    raw = redis_client.get(cache_key(workflow_id, 1))
    assert raw is not None and b"s3cret-1" not in raw
    assert 0 < redis_client.ttl(cache_key(workflow_id, 1)) <= 600


def test_a_new_generation_drops_the_old_and_termination_drops_all(
    conn: Any, builder: Builder, redis_client: redis.Redis, cache: DefinitionCache
) -> None:
    workflow_id = container_workflow(conn, "local/busybox:latest")
    builder.apply(event(workflow_id))
    conn.execute(
        "UPDATE workflows SET generation = 2, build_status = 'QUEUED' WHERE id = %s",
        (workflow_id,),
    )
    builder.apply(event(workflow_id, generation=2, kind=WorkflowEventType.UPDATED))
    assert redis_client.exists(cache_key(workflow_id, 1)) == 0
    assert cache.get(workflow_id, 2) is not None
    builder.apply(event(workflow_id, generation=2, kind=WorkflowEventType.DELETED))
    assert redis_client.exists(cache_key(workflow_id, 2)) == 0


def test_a_payload_the_policy_forbids_fails_its_build(conn: Any, builder: Builder) -> None:
    # Stored before the operator's policy said otherwise (the API refuses it today).
    workflow_id = container_workflow(conn, "local/busybox:latest", network="host")
    builder.apply(event(workflow_id))
    status, error = build_state(conn, workflow_id)
    assert status == "FAILED"
    assert error is not None and "'host' is not allowed" in error


@pytest.mark.parametrize(
    ("image", "policy", "message"),
    [
        ("bars/x:1", "if-not-present", "image bars/x:1 not found locally and pull failed: "),
        ("bars/x:1", "never", "image bars/x:1 not found locally and pull_policy is never"),
        (
            "local/busybox:latest",
            "always",
            "image local/busybox:latest not found and pull failed: ",
        ),
    ],
)
def test_an_image_that_cannot_be_had_fails_the_build_naming_it(
    conn: Any, builder: Builder, image: str, policy: str, message: str
) -> None:
    workflow_id = container_workflow(conn, image, pull_policy=policy)
    builder.apply(event(workflow_id))
    status, error = build_state(conn, workflow_id)
    assert status == "FAILED"
    assert error is not None and error.startswith(message)


def test_an_event_of_an_older_generation_changes_nothing(conn: Any, builder: Builder) -> None:
    workflow_id = container_workflow(conn, "bars/x:1")
    conn.execute("UPDATE workflows SET generation = 2 WHERE id = %s", (workflow_id,))
    builder.apply(event(workflow_id, generation=1))
    assert build_state(conn, workflow_id) == ("QUEUED", None)


class SlowRegistry:
    """A stand-in for the images API whose pull takes a while and counts overlapping pulls."""

    def __init__(self) -> None:
        self.present = False
        self.pulls = 0
        self.active = 0
        self.max_active = 0
        self._lock = threading.Lock()

    def get(self, image: str) -> Any:
        if not self.present:
            raise docker.errors.ImageNotFound("absent")
        return type("Image", (), {"id": "sha256:" + "0" * 64})()

    def pull(self, image: str) -> None:
        with self._lock:
            self.pulls += 1
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        time.sleep(0.5)
        self.present = True
        with self._lock:
            self.active -= 1


def test_replicas_pull_an_image_once_under_the_redis_lock(redis_client: redis.Redis) -> None:
    registry = SlowRegistry()
    fake_docker = type("Docker", (), {"images": registry})()
    image = f"team/app-{uuid.uuid4().hex[:6]}:1"
    results: list[str] = []

    def build() -> None:
        results.append(
            Images(fake_docker, redis_client, lock_ttl_s=1).ensure(image, "if-not-present")
        )  # type: ignore[arg-type]

    threads = [threading.Thread(target=build) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert registry.pulls == 1 and registry.max_active == 1
    assert len(results) == 4 and len(set(results)) == 1


def test_the_reaper_removes_containers_no_lease_owns(docker_client: docker.DockerClient) -> None:
    owned_job, orphan_job = uuid.uuid4(), uuid.uuid4()
    installation = f"test-{uuid.uuid4().hex[:8]}"
    made = [
        docker_client.containers.create(
            "local/busybox:latest",
            ["sleep", "60"],
            labels={LABEL_JOB: str(job), LABEL_LEASE: "1", LABEL_INSTALLATION: installation},
        )
        for job in (owned_job, orphan_job)
    ]
    try:
        reaper = Reaper(
            docker_client, owned=lambda leases: {owned_job}, mine=set, installation=installation
        )
        assert reaper.reap() == 1
        left = {
            c.labels[LABEL_JOB]
            for c in docker_client.containers.list(
                all=True, filters={"label": f"{LABEL_INSTALLATION}={installation}"}
            )
        }
        assert left == {str(owned_job)}
    finally:
        for container in made:
            try:
                container.remove(force=True)
            except docker.errors.NotFound:
                pass


def test_an_old_cleartext_definition_is_purged_when_the_worker_starts(
    redis_client: redis.Redis, cache: DefinitionCache
) -> None:
    workflow_id = uuid.uuid4()
    # As the code before sealed definitions cached them: JSON, env in clear, no expiry.
    redis_client.set(cache_key(workflow_id, 1), b'{"v": 1, "env": {"A": "s3cret"}}')
    sealed = cache_key(workflow_id, 2)
    redis_client.set(sealed, BOX.encrypt(b"{}"))
    assert cache.purge_cleartext() >= 1
    assert redis_client.exists(cache_key(workflow_id, 1)) == 0
    assert redis_client.exists(sealed) == 1
    redis_client.delete(sealed)


def test_a_working_dir_docker_cannot_stat_fails_nothing_at_build(
    conn: Any, builder: Builder
) -> None:
    # Docker answers 500 for a path under a file; the build must not crash the worker.
    workflow_id = container_workflow(conn, "local/busybox:latest", working_dir="/bin/sh/x")
    builder.apply(event(workflow_id))
    assert build_state(conn, workflow_id) == ("COMPLETED", None)


@pytest.fixture(scope="module")
def argv_images(docker_client: docker.DockerClient) -> Iterator[dict[str, str]]:
    """Local images (no registry here) that run nothing, only their CMD, only their ENTRYPOINT."""
    suffix = uuid.uuid4().hex[:8]
    # Reset both even on the bare one: the test must not depend on how local/busybox was made.
    dockerfiles = {
        "bare": "ENTRYPOINT []\nCMD []",
        "cmd": 'ENTRYPOINT []\nCMD ["echo", "hi"]',
        "entrypoint": 'ENTRYPOINT ["echo"]\nCMD []',
    }
    tags = {name: f"local/chronoverse-test-{name}:{suffix}" for name in dockerfiles}
    try:
        for name, lines in dockerfiles.items():
            dockerfile = f"FROM local/busybox:latest\n{lines}\n".encode()
            docker_client.images.build(fileobj=io.BytesIO(dockerfile), tag=tags[name], rm=True)
        yield tags
    finally:
        for tag in tags.values():
            try:
                docker_client.images.remove(tag, force=True)
            except docker.errors.ImageNotFound:
                pass


@pytest.mark.parametrize(
    ("image", "command", "args", "error"),
    [
        ("bare", None, [], "No command specified: the image {image} has neither ENTRYPOINT"),
        ("bare", [], [], "No command specified: an empty `command` drops the ENTRYPOINT"),
        ("entrypoint", [], [], "No command specified: an empty `command` drops the ENTRYPOINT"),
        ("bare", None, ["echo", "hi"], None),
        ("bare", ["echo"], [], None),
        ("cmd", None, [], None),
        ("cmd", [], [], None),
        ("entrypoint", None, [], None),
    ],
)
def test_a_build_fails_when_its_containers_would_have_nothing_to_run(
    conn: Any,
    builder: Builder,
    cache: DefinitionCache,
    docker_client: docker.DockerClient,
    argv_images: dict[str, str],
    image: str,
    command: list[str] | None,
    args: list[str],
    error: str | None,
) -> None:
    tag = argv_images[image]
    workflow_id = container_workflow(conn, tag, command=command, args=args)
    builder.apply(event(workflow_id))
    status, build_error = build_state(conn, workflow_id)
    if error is None:
        assert (status, build_error) == ("COMPLETED", None)
    else:
        assert status == "FAILED"
        assert build_error is not None and build_error.startswith(error.format(image=tag))
        assert cache.get(workflow_id, 1) is None
    # The build says what Docker says when a job creates its container (as the executor does).
    try:
        docker_client.containers.create(
            tag, entrypoint=command, command=args or None, network_mode="none"
        ).remove(force=True)
        refused = None
    except docker.errors.APIError as exc:
        refused = str(exc.explanation)
    assert (refused == "No command specified") is (error is not None), refused
