"""CONTAINER builds against real Postgres, Redis, Kafka and Docker.

Nothing here pulls from a registry or leaves loopback: images are local, and a pull that must
fail goes to a registry on 127.0.0.1 where nothing listens.
"""

from __future__ import annotations

import gc
import io
import os
import re
import socket
import socketserver
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import docker
import httpx
import psycopg
import pytest
import redis
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from chronoverse.definition_cache import DefinitionCache
from chronoverse.definitions import (
    LABEL_INSTALLATION,
    LABEL_JOB,
    LABEL_LEASE,
    cache_key,
)
from chronoverse.domain import Topic, WorkflowKind
from chronoverse.events import WorkflowEvent, WorkflowEventType
from chronoverse.kafka.admin import delete_topics, ensure_topics
from chronoverse.kafka.producer import OutgoingMessage, Producer
from chronoverse.payloads import ContainerPolicy, image_reference_error
from chronoverse.postgres import Pool, create_pool
from chronoverse.secrets import SecretBox, generate_key, seal_payload
from chronoverse.settings import PostgresSettings
from services.execution_worker.reaper import Reaper
from services.workflow_worker.builds import Builder
from services.workflow_worker.images import Images, ImageUnavailableError, pull_lock_name
from services.workflow_worker.settings import Settings
from services.workflow_worker.worker import WorkflowWorker
from tests.conftest import wait_until
from tests.factories import make_user, make_workflow
from tests.integration.conftest import free_port

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


KEY = generate_key()
BOX = SecretBox([KEY])
# A registry address where nothing listens: a pull fails at once, without leaving the machine.
NO_REGISTRY = "127.0.0.1:1"
INSTALLATION_ADVICE = (
    "this is a problem of the installation, not of the workflow: tell the operator, and once it "
    "is fixed, update the workflow's payload to build it again"
)


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


def stored_workflow(conn: Any, payload: Any) -> uuid.UUID:
    """A CONTAINER workflow whose payload is stored as given: as one stored before this release
    (or edited by hand), which the API would refuse today."""
    workflow_id = make_workflow(conn, make_user(conn), kind="CONTAINER", build_status="QUEUED")
    conn.execute("UPDATE workflows SET payload = %s WHERE id = %s", (Jsonb(payload), workflow_id))
    return workflow_id


def event(
    workflow_id: uuid.UUID,
    generation: int = 1,
    kind: WorkflowEventType = WorkflowEventType.CREATED,
    workflow_kind: WorkflowKind = WorkflowKind.CONTAINER,
) -> WorkflowEvent:
    return WorkflowEvent(
        type=kind,
        workflow_id=workflow_id,
        user_id=uuid.uuid4(),  # the builder reads the owner from the workflow's row
        kind=workflow_kind,
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


@pytest.fixture(scope="module")
def present_unpullable(docker_client: docker.DockerClient) -> Iterator[str]:
    """A local image whose name points at a registry where nothing listens."""
    tag = f"{NO_REGISTRY}/chronoverse-test/busybox:{uuid.uuid4().hex[:8]}"
    docker_client.images.get("local/busybox:latest").tag(tag)
    yield tag
    docker_client.images.remove(tag)


@pytest.mark.parametrize(
    ("image", "policy", "message"),
    [
        (
            f"{NO_REGISTRY}/bars/x:1",
            "if-not-present",
            f"image {NO_REGISTRY}/bars/x:1 not found locally and pull failed: ",
        ),
        ("bars/x:1", "never", "image bars/x:1 not found locally and pull_policy is never"),
        (None, "always", "image {image} not found and pull failed: "),
    ],
)
def test_an_image_that_cannot_be_had_fails_the_build_naming_it(
    conn: Any,
    builder: Builder,
    present_unpullable: str,
    image: str | None,
    policy: str,
    message: str,
) -> None:
    # None: an image that is present, but `always` pulls it all the same.
    image = image or present_unpullable
    message = message.format(image=image)
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
            docker_client,
            owned=lambda leases: {owned_job},
            mine=set,
            installation=installation,
            removal_grace_s=0,  # just created: no grace for a worker about to remove them
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


# --- a problem of one workflow fails its build, never the worker (issue 14) ---------------------

# The image of issue 14: the API took it (201), Docker refused it, and the worker died on it.
LONG_IMAGE = "a" * 300


def test_the_api_refuses_the_image_of_the_issue_naming_the_field(
    http: httpx.Client, user: dict[str, str]
) -> None:
    response = http.post(
        "/workflows",
        headers=user,
        json={"name": "x", "kind": "CONTAINER", "interval": 60, "payload": {"image": LONG_IMAGE}},
    )
    assert response.status_code == 422, response.text
    [detail] = response.json()["error"]["details"]
    assert detail["field"] == "payload.image"
    assert "Docker allows at most 255" in detail["message"]


# What Docker 20.10 answers for each: 400 (refused) or a lookup (404 here, or the image).
DOCKER_REFUSES = [
    "a" * 238,  # docker.io/library/ + 238 = 256
    LONG_IMAGE,
    "team/" + "a" * 241,
    "registry.example.com/" + "a" * 235,
    "Busybox",
    "local/BusyBox:latest",
    "local/busybox:bad!tag",
    "local/busybox:.hidden",
    "app:" + "t" * 129,
    "local/busybox@sha256:" + "a" * 63,
    "local/busybox@sha256:" + "A" * 64,
    "bad_host.example:5000/app",
    "registry:port/app",
]
DOCKER_TAKES = [
    "busybox",
    "local/busybox:latest",
    "registry.example.com:5000/team/app:v1.2",
    "localhost:5000/team/app:1",
    "Registry.Example.com/app",
    "local/busybox@sha256:" + "0123456789abcdef" * 4,
    "a" * 237,
    "team/" + "a" * 240,
    "registry.example.com/" + "a" * 234,
    "app:" + "t" * 128,
    "a__b/c---d.e",
    "0_0.0/app",  # no host name, so a path component
]


@pytest.mark.parametrize(
    "image", DOCKER_REFUSES + DOCKER_TAKES, ids=lambda image: image if len(image) < 40 else None
)
def test_the_api_refuses_what_the_docker_engine_refuses(
    docker_client: docker.DockerClient, image: str
) -> None:
    # A local lookup: the engine parses the reference and answers, and contacts no registry.
    try:
        docker_client.images.get(image)
        refused = False
    except docker.errors.ImageNotFound:
        refused = False
    except docker.errors.APIError as exc:
        assert exc.status_code == 400, exc
        refused = True
    assert refused is (image in DOCKER_REFUSES)
    assert (image_reference_error(image) is not None) is refused


def test_a_reference_the_engine_refuses_is_an_image_error_saying_why(
    docker_client: docker.DockerClient, redis_client: redis.Redis
) -> None:
    images = Images(docker_client, redis_client)
    with pytest.raises(ImageUnavailableError) as caught:
        images.ensure(LONG_IMAGE, "if-not-present")
    assert caught.value.message == (
        f"Docker refuses the image reference {'a' * 80}… (300 characters): repository name must "
        "not be more than 255 characters; correct `image` in the workflow's payload"
    )
    with pytest.raises(ImageUnavailableError) as caught:
        images.ensure("Busybox", "never")
    assert caught.value.message == (
        "Docker refuses the image reference Busybox: invalid reference format: repository name "
        "must be lowercase; correct `image` in the workflow's payload"
    )


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (
            {"image": LONG_IMAGE, "command": ["true"]},
            "the payload is not allowed: payload.image: the repository name is 318 characters "
            "long as Docker counts it, with the 'docker.io/library/' it implies; Docker allows "
            "at most 255; update the workflow's payload",
        ),
        (
            {"image": "local/busybox:latest", "entrypoint": ["true"]},
            "the payload is not allowed: payload.entrypoint: is not a known field; update the "
            "workflow's payload",
        ),
        (
            {"image": "local/busybox:latest", "env": {"A": SecretBox([generate_key()]).seal("x")}},
            "cannot read the payload's secrets: cannot decrypt: sealed with a key that is not in "
            "CHRONOVERSE_SECRET_KEYS, or tampered with; tell the operator, or send the values "
            "again in an update of the workflow's payload",
        ),
        (
            {"image": "local/busybox:latest", "env": {"A": 5}},
            "the stored payload cannot be read: it is not in the form Chronoverse stores; "
            "update the workflow's payload",
        ),
        (
            "local/busybox:latest",
            "the stored payload cannot be read: it is not in the form Chronoverse stores; "
            "update the workflow's payload",
        ),
    ],
    ids=["image-docker-refuses", "unknown-field", "other-key", "env-not-text", "not-an-object"],
)
def test_a_stored_payload_that_no_longer_builds_fails_and_the_builder_goes_on(
    conn: Any, builder: Builder, payload: Any, message: str
) -> None:
    workflow_id = stored_workflow(conn, payload)
    builder.apply(event(workflow_id))
    assert build_state(conn, workflow_id) == ("FAILED", message)
    following = container_workflow(conn, "local/busybox:latest")
    builder.apply(event(following))
    assert build_state(conn, following) == ("COMPLETED", None)


def test_a_pull_lock_that_is_never_released_fails_the_build_not_the_worker(
    conn: Any,
    pool: Pool,
    docker_client: docker.DockerClient,
    redis_client: redis.Redis,
    cache: DefinitionCache,
) -> None:
    image = f"{NO_REGISTRY}/chronoverse-test/absent-{uuid.uuid4().hex[:8]}:1"
    # Another worker's pull that never ends (a worker stuck, or a huge image).
    held = redis_client.lock(pull_lock_name(image), timeout=60, thread_local=False)
    assert held.acquire(blocking=False)
    try:
        impatient = Builder(
            pool,
            Images(docker_client, redis_client, wait_s=1),
            docker_client,
            cache,
            secrets=BOX,
            policy=ContainerPolicy(),
            installation=f"test-{uuid.uuid4().hex[:8]}",
        )
        workflow_id = container_workflow(conn, image)
        impatient.apply(event(workflow_id))
        assert build_state(conn, workflow_id) == (
            "FAILED",
            f"waited 1 s for another workflow worker's pull of image {image}, which has not "
            "finished; update the workflow's payload to build it again later, and tell the "
            "operator if this repeats",
        )
        following = container_workflow(conn, "local/busybox:latest")
        impatient.apply(event(following))
        assert build_state(conn, following) == ("COMPLETED", None)
    finally:
        held.release()


# --- the Docker engine unreachable: retried for a bounded time, then the build fails ------------


def docker_socket() -> str:
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if not host.startswith("unix://"):
        pytest.skip(f"the tests reach Docker over {host}, not a unix socket")
    return host.removeprefix("unix://")


class DockerDoor:
    """A loopback port to the Docker engine that refuses connections until opened, as an engine
    that is restarting does."""

    def __init__(self, socket_path: str) -> None:
        self.port = free_port()
        self._socket_path = socket_path
        self._server: socketserver.ThreadingTCPServer | None = None

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def open(self) -> None:
        path = self._socket_path

        class Forward(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                with socket.socket(socket.AF_UNIX) as engine:
                    engine.connect(path)
                    back = threading.Thread(target=_pipe, args=(engine, self.request), daemon=True)
                    back.start()
                    _pipe(self.request, engine)
                    back.join(timeout=10)

        class Server(socketserver.ThreadingTCPServer):
            allow_reuse_address = True
            daemon_threads = True

        self._server = Server(("127.0.0.1", self.port), Forward)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def _pipe(source: socket.socket, target: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            target.sendall(data)
    except OSError:
        pass
    finally:
        try:
            target.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def builder_on(
    base_url: str,
    api_version: str,
    pool: Pool,
    redis_client: redis.Redis,
    cache: DefinitionCache,
    *,
    docker_retry_s: float,
) -> tuple[Builder, docker.DockerClient]:
    # A pinned API version: the client asks the engine nothing until used.
    client = docker.DockerClient(base_url=base_url, version=api_version, timeout=30)
    builder = Builder(
        pool,
        Images(client, redis_client),
        client,
        cache,
        secrets=BOX,
        policy=ContainerPolicy(),
        installation=f"test-{uuid.uuid4().hex[:8]}",
        docker_retry_s=docker_retry_s,
    )
    return builder, client


@pytest.mark.parametrize(
    ("where", "cause"),
    [
        ("closed-port", "Connection refused"),
        pytest.param(
            "missing-socket",
            "No such file or directory",
            # docker-py leaks the socket of a unix connect that fails (UnixHTTPConnection.connect);
            # the garbage collector closes it. Collected within this test, see below.
            marks=[
                pytest.mark.filterwarnings("ignore::ResourceWarning"),
                pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
            ],
        ),
    ],
)
def test_an_unreachable_engine_fails_the_build_after_the_retries_and_the_worker_goes_on(
    conn: Any,
    pool: Pool,
    redis_client: redis.Redis,
    cache: DefinitionCache,
    docker_client: docker.DockerClient,
    where: str,
    cause: str,
) -> None:
    base_url = {
        "closed-port": f"tcp://127.0.0.1:{free_port()}",
        "missing-socket": f"unix:///nonexistent/chronoverse-{uuid.uuid4().hex[:8]}.sock",
    }[where]
    builder, client = builder_on(
        base_url, docker_client.api.api_version, pool, redis_client, cache, docker_retry_s=2
    )
    try:
        workflow_id = container_workflow(conn, "local/busybox:latest")
        started = time.monotonic()
        builder.apply(event(workflow_id))
        took = time.monotonic() - started
        status, error = build_state(conn, workflow_id)
        assert status == "FAILED" and 2 <= took < 10, (status, took)
        assert error == (
            f"the Docker engine could not be reached ({cause}) while building with image "
            f"local/busybox:latest; it has been failing for 2 s; {INSTALLATION_ADVICE}"
        )
        # Still handling events: the next build of the same outage fails at once, and a
        # terminated workflow's containers are given up on, with an error in the log.
        following = container_workflow(conn, "local/busybox:latest")
        started = time.monotonic()
        builder.apply(event(following))
        assert build_state(conn, following)[0] == "FAILED"
        builder.apply(event(following, kind=WorkflowEventType.TERMINATED))
        assert time.monotonic() - started < 5
        heartbeat = make_workflow(conn, make_user(conn), build_status="QUEUED")
        builder.apply(event(heartbeat, workflow_kind=WorkflowKind.HEARTBEAT))
        assert build_state(conn, heartbeat) == ("COMPLETED", None)
    finally:
        client.close()
        gc.collect()


def test_an_engine_that_comes_back_within_the_retries_fails_no_build(
    conn: Any,
    pool: Pool,
    redis_client: redis.Redis,
    cache: DefinitionCache,
    docker_client: docker.DockerClient,
) -> None:
    door = DockerDoor(docker_socket())
    builder, client = builder_on(
        door.url, docker_client.api.api_version, pool, redis_client, cache, docker_retry_s=20
    )
    opener = threading.Timer(2.0, door.open)  # the engine restarts for 2 s
    try:
        workflow_id = container_workflow(conn, "local/busybox:latest", working_dir="/srv/x")
        opener.start()
        started = time.monotonic()
        builder.apply(event(workflow_id))
        assert build_state(conn, workflow_id) == ("COMPLETED", None)
        assert time.monotonic() - started >= 2
        assert cache.get(workflow_id, 1) is not None
    finally:
        opener.cancel()
        client.close()
        door.close()


# --- the real worker process loop: one poison build after another, and it keeps consuming -------


@pytest.fixture
def running_worker(
    database_url: str, environ: Mapping[str, str]
) -> Iterator[tuple[Settings, Callable[[], str | None]]]:
    settings = Settings.from_environ(
        {
            **environ,
            "CHRONOVERSE_DATABASE_URL": database_url,
            "CHRONOVERSE_KAFKA_TOPIC_PREFIX": f"test-{uuid.uuid4().hex[:8]}.",
            "CHRONOVERSE_SECRET_KEYS": KEY,
            "CHRONOVERSE_INSTALLATION": f"test-{uuid.uuid4().hex[:8]}",
            "CHRONOVERSE_PULL_WAIT_S": "1",
        }
    )
    topic = settings.topic(Topic.WORKFLOWS)
    ensure_topics(settings, [topic], partitions=1)
    stop = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            WorkflowWorker(settings).run(stop)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, name="workflow-worker", daemon=True)
    thread.start()

    def dead() -> str | None:
        """Why the worker stopped, if it did."""
        if errors:
            return repr(errors[0])
        return None if thread.is_alive() else "it returned"

    try:
        yield settings, dead
    finally:
        stop.set()
        thread.join(timeout=60)
        assert not thread.is_alive(), "the workflow worker did not stop"
        delete_topics(settings, [topic])


def test_the_worker_fails_each_poison_build_and_goes_on_consuming(
    conn: Any,
    redis_client: redis.Redis,
    running_worker: tuple[Settings, Callable[[], str | None]],
) -> None:
    settings, dead = running_worker
    image = f"{NO_REGISTRY}/chronoverse-test/absent-{uuid.uuid4().hex[:8]}:1"
    held = redis_client.lock(pull_lock_name(image), timeout=120, thread_local=False)
    assert held.acquire(blocking=False)
    try:
        poison = {
            stored_workflow(conn, {"image": LONG_IMAGE, "command": ["true"]}): "the payload is "
            "not allowed: payload.image: the repository name is 318 characters long",
            stored_workflow(conn, {"image": "local/busybox:latest", "env": {"A": 5}}): "the "
            "stored payload cannot be read",
            stored_workflow(conn, ["not", "an", "object"]): "the stored payload cannot be read",
            container_workflow(conn, image): f"waited 1 s for another workflow worker's pull of "
            f"image {image}",
        }
        healthy = container_workflow(conn, "local/busybox:latest")
        producer = Producer(settings, client_id="test-builds")
        try:
            producer.publish_all(
                OutgoingMessage(
                    topic=settings.topic(Topic.WORKFLOWS),
                    key=str(workflow_id),
                    value=event(workflow_id).encode(),
                )
                for workflow_id in [*poison, healthy]
            )
        finally:
            producer.close()
        wait_until(
            lambda: dead() or build_state(conn, healthy)[0] == "COMPLETED",
            timeout_s=60,
            message="the healthy build after the poison ones",
        )
        assert dead() is None
        for workflow_id, message in poison.items():
            status, error = build_state(conn, workflow_id)
            assert status == "FAILED" and error is not None and error.startswith(message), error
            assert re.search(r"Traceback|File \"", error) is None
    finally:
        held.release()
