"""CONTAINER workflows end to end: builds, runs, logs through Kafka and Postgres, SSE."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from typing import Any

import docker
import psycopg
import pytest
import redis
from httpx_sse import connect_sse

from chronoverse.definitions import ContainerDefinition, cache_key
from chronoverse.kafka.admin import ensure_topics
from chronoverse.secrets import SecretBox
from chronoverse.settings import KafkaSettings
from tests.conftest import wait_until
from tests.e2e.stack import ApiUser, Stack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

BUSYBOX = "local/busybox:latest"
PYTHON = "local/python:3.11"
FINAL = {"COMPLETED", "FAILED", "CANCELED"}


@pytest.fixture(scope="module")
def stack(
    environ: Mapping[str, str],
    empty_database_factory: Callable[..., str],
    migrated_template: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    stack = Stack(
        environ,
        empty_database_factory(template=migrated_template),
        tmp_path_factory.mktemp("containers"),
        CHRONOVERSE_LEASE_S="4",
        CHRONOVERSE_STOP_GRACE_S="1",
        CHRONOVERSE_REAPER_INTERVAL_S="1",
        CHRONOVERSE_RETRY_BASE_DELAY_S="0.5",
        CHRONOVERSE_SSE_KEEPALIVE_S="1",
        CHRONOVERSE_VOLUME_SWEEP_INTERVAL_S="1",
    )
    settings = KafkaSettings.from_environ(stack.env)
    ensure_topics(settings, settings.all_topics())
    try:
        for name in (
            "server",
            "scheduling-worker",
            "workflow-worker",
            "execution-worker",
            "log-processor",
        ):
            stack.start(name, name)
        yield stack
    finally:
        stack.stop_all()


@pytest.fixture
def user(stack: Stack) -> Iterator[ApiUser]:
    user = ApiUser(stack.api)
    yield user
    user.close()


def container(
    user: ApiUser, script: str, *, image: str = BUSYBOX, **payload: Any
) -> dict[str, Any]:
    command = ["sh", "-c", script] if image == BUSYBOX else ["python3", "-c", script]
    return user.create(
        name="box",
        kind="CONTAINER",
        interval=10080,
        payload={"image": image, "command": command, **payload},
        **payload.pop("_workflow", {}),
    )


def first_job(user: ApiUser, workflow: dict[str, Any], timeout_s: float = 90) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        jobs = user.jobs(workflow["id"])
        return jobs[-1] if jobs and jobs[-1]["status"] in FINAL else None

    return dict(wait_until(done, timeout_s=timeout_s, message="the job to finish"))


def stored_lines(stack: Stack, job_id: str) -> list[tuple[int, str, str]]:
    """The job's stored lines, once the log processor has recorded their end."""
    with psycopg.connect(stack.env["CHRONOVERSE_DATABASE_URL"]) as conn:

        def closed() -> bool:
            row = conn.execute(
                "SELECT logs_closed_at FROM jobs WHERE id = %s", (job_id,)
            ).fetchone()
            conn.commit()
            return bool(row and row[0])

        wait_until(closed, timeout_s=60, message="the log end marker to be stored")
        rows = conn.execute(
            "SELECT seq, stream, line FROM job_logs WHERE job_id = %s ORDER BY seq", (job_id,)
        ).fetchall()
    return [(r[0], r[1], r[2]) for r in rows]


def read_sse(
    user: ApiUser,
    workflow_id: str,
    job_id: str,
    *,
    last_event_id: str | None = None,
    stop_after: int | None = None,
) -> tuple[list[dict[str, Any]], bool]:
    """Events until `end` (or stop_after lines): the log lines, and whether the stream ended."""
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    lines: list[dict[str, Any]] = []
    url = f"/workflows/{workflow_id}/jobs/{job_id}/logs/stream"
    with connect_sse(user.http, "GET", url, headers=headers, timeout=60) as source:
        for event in source.iter_sse():
            if event.event == "end":
                return lines, True
            if event.event == "log":
                data = json.loads(event.data)
                assert event.id == f"{data['attempt']}.{data['seq']}"
                lines.append(data)
                if stop_after is not None and len(lines) >= stop_after:
                    return lines, False
    return lines, False


LOOP = "for i in $(seq 1 200); do echo out $i; echo err $i >&2; done"


def test_output_arrives_exactly_once_and_in_order(stack: Stack, user: ApiUser) -> None:
    workflow = container(user, LOOP)
    job = first_job(user, workflow)
    assert (job["status"], job["exit_code"]) == ("COMPLETED", 0), stack.logs()
    lines = stored_lines(stack, job["id"])
    assert [seq for seq, _, _ in lines] == list(range(400))
    assert [line for _, stream, line in lines if stream == "stdout"] == [
        f"out {i}" for i in range(1, 201)
    ]
    assert [line for _, stream, line in lines if stream == "stderr"] == [
        f"err {i}" for i in range(1, 201)
    ]

    events, ended = read_sse(user, workflow["id"], job["id"])
    assert ended
    assert [e["seq"] for e in events] == list(range(400))
    assert [(e["stream"], e["line"]) for e in events] == [(s, line) for _, s, line in lines]

    page = user.http.get(
        f"/workflows/{workflow['id']}/jobs/{job['id']}/logs",
        params={"limit": 150, "stream": "stderr"},
    ).json()
    assert [x["line"] for x in page["logs"]] == [f"err {i}" for i in range(1, 151)]
    assert page["next_cursor"] is not None


def test_a_client_resumes_with_last_event_id_without_gap_or_duplicate(
    stack: Stack, user: ApiUser
) -> None:
    workflow = container(user, LOOP)
    job = first_job(user, workflow)
    first, ended = read_sse(user, workflow["id"], job["id"], stop_after=150)
    assert not ended
    rest, ended = read_sse(user, workflow["id"], job["id"], last_event_id=str(first[-1]["seq"]))
    assert ended
    assert [e["seq"] for e in first + rest] == list(range(400))


def test_a_line_reaches_a_live_viewer_within_a_second(stack: Stack, user: ApiUser) -> None:
    script = (
        "import time\nprint('ready', flush=True)\ntime.sleep(3)\n"
        "print(time.time(), flush=True)\ntime.sleep(4)\nprint('done', flush=True)"
    )
    workflow = container(user, script, image=PYTHON)
    wait_until(
        lambda: user.jobs(workflow["id"]) and user.jobs(workflow["id"])[0]["status"] == "RUNNING",
        timeout_s=60,
        message="the container to run",
    )
    job_id = user.jobs(workflow["id"])[0]["id"]
    received: list[tuple[float, str]] = []
    url = f"/workflows/{workflow['id']}/jobs/{job_id}/logs/stream"
    with connect_sse(user.http, "GET", url, timeout=60) as source:
        for event in source.iter_sse():
            if event.event == "end":
                break
            if event.event == "log":
                received.append((time.time(), json.loads(event.data)["line"]))
    assert [line for _, line in received] == ["ready", received[1][1], "done"]
    arrived_at, printed = received[1]
    assert arrived_at - float(printed) < 1.0, f"took {arrived_at - float(printed):.3f}s"
    assert received[2][0] - arrived_at > 3  # it came while the container still ran


def test_a_non_zero_exit_fails_and_two_terminate(stack: Stack, user: ApiUser) -> None:
    workflow = user.create(
        name="exit3",
        kind="CONTAINER",
        interval=10080,
        max_consecutive_job_failures_allowed=2,
        payload={"image": BUSYBOX, "command": ["sh", "-c", "echo bye; exit 3"]},
    )
    job = first_job(user, workflow)
    assert (job["status"], job["exit_code"], job["failure_kind"]) == ("FAILED", 3, "USER")
    assert job["error"] == "exited with code 3"
    assert user.trigger(workflow["id"]).status_code == 201
    wait_until(
        lambda: user.workflow(workflow["id"])["terminated_at"],
        timeout_s=60,
        message="termination after two failures",
    )
    assert [j["status"] for j in user.jobs(workflow["id"])] == ["FAILED", "FAILED"]


def test_a_timed_out_job_fails_and_its_container_is_gone(stack: Stack, user: ApiUser) -> None:
    workflow = container(user, "echo start; sleep 60", timeout_seconds=1)
    job = first_job(user, workflow)
    assert (job["status"], job["failure_kind"], job["error"]) == (
        "FAILED",
        "USER",
        "timed out after 1s",
    )
    client = docker.from_env()
    try:
        left = client.containers.list(
            all=True, filters={"label": f"chronoverse.job_id={job['id']}"}
        )
    finally:
        client.close()
    assert left == []
    assert [line for _, _, line in stored_lines(stack, job["id"])] == ["start"]


def test_a_missing_image_fails_the_build_and_runs_nothing(stack: Stack, user: ApiUser) -> None:
    workflow = user.create(
        name="ghost",
        kind="CONTAINER",
        interval=1,
        payload={"image": "127.0.0.1:1/bars/x:1", "command": ["true"]},  # no registry listens
    )
    state = wait_until(
        lambda: (w := user.workflow(workflow["id"]))["build_status"] == "FAILED" and w,
        timeout_s=60,
        message="the build to fail",
    )
    assert state["build_error"].startswith(
        "image 127.0.0.1:1/bars/x:1 not found locally and pull failed:"
    )
    time.sleep(1.5)
    assert user.jobs(workflow["id"]) == []
    refused = user.trigger(workflow["id"])
    assert refused.status_code == 409 and "FAILED" in refused.json()["error"]["message"]


def test_big_output_arrives_complete(stack: Stack, user: ApiUser) -> None:
    one_mb = container(user, "import sys\nsys.stdout.write('x' * 1_000_000 + '\\n')", image=PYTHON)
    many = container(
        user,
        "import sys\nsys.stdout.writelines(f'line {i}\\n' for i in range(200_000))",
        image=PYTHON,
    )
    job = first_job(user, one_mb)
    assert job["status"] == "COMPLETED"
    pieces = stored_lines(stack, job["id"])
    assert len(pieces) == 62 and "".join(line for _, _, line in pieces) == "x" * 1_000_000
    job = first_job(user, many, timeout_s=180)
    assert job["status"] == "COMPLETED"

    def all_stored() -> bool:
        with psycopg.connect(stack.env["CHRONOVERSE_DATABASE_URL"]) as conn:
            row = conn.execute(
                "SELECT count(*), max(seq), min(line) FROM job_logs WHERE job_id = %s", (job["id"],)
            ).fetchone()
        return bool(row and row[0] == 200_000 and row[1] == 199_999)

    wait_until(all_stored, timeout_s=120, interval_s=0.5, message="200,000 stored lines")


def test_a_lost_definition_cache_is_rebuilt(stack: Stack, user: ApiUser) -> None:
    workflow = container(user, "echo cached")
    assert first_job(user, workflow)["status"] == "COMPLETED"
    client = redis.Redis.from_url(stack.env["CHRONOVERSE_REDIS_URL"])
    client.flushall()
    client.close()
    assert user.trigger(workflow["id"]).status_code == 201
    wait_until(
        lambda: [j["status"] for j in user.jobs(workflow["id"])] == ["COMPLETED", "COMPLETED"],
        timeout_s=60,
        message="the job after FLUSHALL",
    )


def test_a_killed_worker_leaves_no_container_and_one_outcome(stack: Stack, user: ApiUser) -> None:
    workflow = container(user, "echo started; sleep 6; echo finished")
    wait_until(
        lambda: user.jobs(workflow["id"]) and user.jobs(workflow["id"])[0]["status"] == "RUNNING",
        timeout_s=60,
        message="the container to run",
    )
    job_id = user.jobs(workflow["id"])[0]["id"]
    stack.kill("execution-worker")
    stack.start("execution-worker-2", "execution-worker")
    job = first_job(user, workflow, timeout_s=120)
    assert (job["status"], job["attempt"]) == ("COMPLETED", 2)
    client = docker.from_env()
    try:
        wait_until(
            lambda: (
                not client.containers.list(
                    all=True, filters={"label": f"chronoverse.job_id={job_id}"}
                )
            ),
            timeout_s=30,
            message="no labelled container left",
        )
    finally:
        client.close()
    assert len(user.jobs(workflow["id"])) == 1


def test_terminating_stops_the_running_container_and_cancels_the_job(
    stack: Stack, user: ApiUser
) -> None:
    workflow = container(user, "echo up; sleep 60")
    wait_until(
        lambda: user.jobs(workflow["id"]) and user.jobs(workflow["id"])[0]["status"] == "RUNNING",
        timeout_s=60,
        message="the container to run",
    )
    job_id = user.jobs(workflow["id"])[0]["id"]
    client = docker.from_env()
    try:
        # RUNNING comes with the claim; the container a moment later.
        [running] = wait_until(
            lambda: client.containers.list(filters={"label": f"chronoverse.job_id={job_id}"}),
            timeout_s=30,
            message="the job's container",
        )
        host = running.attrs["HostConfig"]
        assert host["Privileged"] is False
        assert "no-new-privileges" in host["SecurityOpt"]
        assert (host["Memory"], host["NanoCpus"], host["PidsLimit"]) == (256 * 2**20, 10**9, 256)
        assert host["NetworkMode"] == "none"
        assert running.labels["chronoverse.workflow_id"] == workflow["id"]
        assert running.labels["chronoverse.lease_token"] == "1"
    finally:
        client.close()
    assert user.http.post(f"/workflows/{workflow['id']}/terminate").status_code == 200
    job = first_job(user, workflow, timeout_s=60)
    assert (job["status"], job["error"]) == ("CANCELED", "terminated by the user")
    client = docker.from_env()
    try:
        assert (
            client.containers.list(all=True, filters={"label": f"chronoverse.job_id={job_id}"})
            == []
        )
    finally:
        client.close()
    assert user.workflow(workflow["id"])["consecutive_job_failures_count"] == 0


# --- the sandbox (issue 12): what a job can and cannot do ----------------------------------------


def lines_of(stack: Stack, job_id: str) -> list[str]:
    return [line for _, _, line in stored_lines(stack, job_id)]


def finished(user: ApiUser, workflow: dict[str, Any], count: int) -> list[dict[str, Any]]:
    """The workflow's jobs, newest first, once ``count`` of them have finished."""

    def all_done() -> list[dict[str, Any]] | None:
        jobs = user.jobs(workflow["id"])
        return jobs if sum(j["status"] in FINAL for j in jobs) >= count else None

    return list(wait_until(all_done, timeout_s=60, message=f"{count} finished jobs"))


def test_a_job_runs_unprivileged_on_a_read_only_root(stack: Stack, user: ApiUser) -> None:
    workflow = container(
        user,
        "id -u; grep CapEff /proc/self/status; "
        "touch /x 2>/dev/null && echo wrote-root || echo no-root; "
        "touch /tmp/y && echo wrote-tmp; ulimit -n",
    )
    job = first_job(user, workflow)
    assert job["status"] == "COMPLETED", job
    out = lines_of(stack, job["id"])
    assert out[0] == "65534"
    assert out[1].split() == ["CapEff:", "0000000000000000"]
    assert out[2:] == ["no-root", "wrote-tmp", "1024"]


def test_a_new_working_dir_is_writable_and_one_in_the_image_keeps_its_files(
    stack: Stack, user: ApiUser
) -> None:
    fresh = container(user, "touch made && ls", working_dir="/work")
    existing = container(user, "head -n 1 passwd", working_dir="/etc")
    for workflow, expected in ((fresh, ["made"]), (existing, ["root:x:0:0:root:/root:/bin/sh"])):
        job = first_job(user, workflow)
        assert job["status"] == "COMPLETED", job
        assert lines_of(stack, job["id"]) == expected


def test_the_host_network_and_payloads_above_a_ceiling_get_422(user: ApiUser) -> None:
    def refused(payload: dict[str, Any]) -> dict[str, str]:
        response = user.http.post(
            "/workflows",
            json={"name": "x", "kind": "CONTAINER", "interval": 60, "payload": payload},
        )
        assert response.status_code == 422, response.text
        return {d["field"]: d["message"] for d in response.json()["error"]["details"]}

    found = refused({"image": BUSYBOX, "network": "host"})
    assert found == {"payload.network": "'host' is not allowed; allowed: none"}
    found = refused({"image": BUSYBOX, "resources": {"memory_mb": 4096}})
    assert found == {"payload.resources.memory_mb": "is 4096, above the ceiling of 2048"}


def test_a_definition_planted_in_redis_never_runs(stack: Stack, user: ApiUser) -> None:
    workflow = container(user, "echo from-postgres")
    assert first_job(user, workflow)["status"] == "COMPLETED"
    box = SecretBox(stack.env["CHRONOVERSE_SECRET_KEYS"].split(","))
    key = cache_key(workflow["id"], workflow["generation"])
    client = redis.Redis.from_url(stack.env["CHRONOVERSE_REDIS_URL"])
    try:
        stored = client.get(key)
        assert stored is not None
        genuine = ContainerDefinition.unseal(
            box, stored, workflow_id=workflow["id"], generation=workflow["generation"]
        )
        # In clear, as anyone who can write to Redis could plant it: refused, rebuilt from Postgres.
        hostile = replace(genuine, network="host", command=["echo planted"])
        client.set(key, hostile.to_json())
        assert user.trigger(workflow["id"]).status_code == 201
        second = finished(user, workflow, 2)[0]
        assert second["status"] == "COMPLETED", second
        assert lines_of(stack, second["id"]) == ["from-postgres"]
        # Sealed with the installation's key but naming the host network (built before the
        # policy changed): refused at run time as a USER failure.
        client.set(key, hostile.seal(box))
        assert user.trigger(workflow["id"]).status_code == 201
        third = finished(user, workflow, 3)[0]
        assert (third["status"], third["failure_kind"]) == ("FAILED", "USER"), third
        assert "network 'host' is not allowed" in third["error"]
    finally:
        client.close()


def test_env_values_are_never_in_redis_in_clear(stack: Stack, user: ApiUser) -> None:
    secret = f"s3cret-{uuid.uuid4().hex}"
    workflow = container(user, 'test -n "$TOKEN" && echo has-token', env={"TOKEN": secret})
    job = first_job(user, workflow)
    assert job["status"] == "COMPLETED", job
    assert lines_of(stack, job["id"]) == ["has-token"]
    client = redis.Redis.from_url(stack.env["CHRONOVERSE_REDIS_URL"])
    try:
        for key in client.scan_iter(count=1000):
            if client.type(key) == b"string":
                assert secret.encode() not in (client.get(key) or b""), key
    finally:
        client.close()
    assert user.workflow(workflow["id"])["payload"]["env"] == {"TOKEN": "***"}


def test_a_volume_keeps_files_between_runs_and_is_its_owners_alone(
    stack: Stack, user: ApiUser
) -> None:
    script = (
        "if [ -f /data/note ]; then cat /data/note; else echo kept > /data/note && echo wrote; fi"
    )
    volume = {"volumes": [{"name": "cache", "path": "/data"}]}
    workflow = container(user, script, **volume)
    first = first_job(user, workflow)
    assert first["status"] == "COMPLETED", first
    assert lines_of(stack, first["id"]) == ["wrote"]
    assert user.trigger(workflow["id"]).status_code == 201
    second = finished(user, workflow, 2)[0]
    assert lines_of(stack, second["id"]) == ["kept"]

    other = ApiUser(stack.api)
    try:
        theirs = container(other, script, **volume)
        job = first_job(other, theirs)
        assert lines_of(stack, job["id"]) == ["wrote"]  # their own, empty `cache`
        listed = other.http.get("/volumes").json()["volumes"]
        assert [(v["name"], v["workflow_ids"]) for v in listed] == [("cache", [theirs["id"]])]
    finally:
        other.close()

    [mine] = user.http.get("/volumes").json()["volumes"]
    assert (mine["name"], mine["workflow_ids"]) == ("cache", [workflow["id"]])
    assert mine["docker_name"] != listed[0]["docker_name"]
    client = docker.from_env()
    try:
        wait_until(
            lambda: user.http.get("/volumes").json()["volumes"][0]["size_bytes"] is not None,
            timeout_s=30,
            message="the janitor to measure the volume",
        )
        assert user.http.delete("/volumes/cache").status_code == 204
        assert user.http.get("/volumes").json() == {"volumes": []}
        # Mounted again at once, before or after the janitor's sweep: an empty volume.
        assert user.trigger(workflow["id"]).status_code == 201
        third = finished(user, workflow, 3)[0]
        assert lines_of(stack, third["id"]) == ["wrote"]
        assert user.http.delete("/volumes/cache").status_code == 204
        wait_until(
            lambda: not client.volumes.list(filters={"name": mine["docker_name"]}),
            timeout_s=30,
            message="the janitor to remove the Docker volume",
        )
        assert client.volumes.get(listed[0]["docker_name"])  # the other user's is untouched
    finally:
        client.close()
    assert user.http.delete("/volumes/cache").status_code == 404


def test_a_volume_in_use_cannot_be_deleted(stack: Stack, user: ApiUser) -> None:
    workflow = container(
        user, "touch /data/x; sleep 30", volumes=[{"name": "busy", "path": "/data"}]
    )
    wait_until(
        lambda: user.jobs(workflow["id"]) and user.jobs(workflow["id"])[0]["status"] == "RUNNING",
        timeout_s=60,
        message="the job to run",
    )
    wait_until(
        lambda: user.http.get("/volumes").json()["volumes"], timeout_s=30, message="the volume"
    )
    response = user.http.delete("/volumes/busy")
    assert response.status_code == 409, response.text
    assert response.json()["error"]["code"] == "volume_in_use"
    assert user.http.post(f"/workflows/{workflow['id']}/terminate").status_code == 200
