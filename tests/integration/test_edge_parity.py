"""HTTP and gRPC give the same outcome for the same request: one application layer under both.

Each case is a short scenario written once against :class:`Edge`, run through a real HTTP client
and a real gRPC channel against one real server, and reduced to outcome classes ("ok",
"invalid:<fields>", "not_found", "conflict", "unauthenticated"). Both edges must give the same
classes, and the ones the case expects. A check that exists on one edge only fails here.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import grpc
import httpx
import psycopg
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from chronoverse.v1 import (
    auth_pb2,
    auth_pb2_grpc,
    jobs_pb2,
    jobs_pb2_grpc,
    notifications_pb2,
    notifications_pb2_grpc,
    workflows_pb2,
    workflows_pb2_grpc,
)
from tests.integration.conftest import RunningServer

pytestmark = pytest.mark.integration

PASSWORD = "correct horse"


@dataclass(frozen=True)
class Answer:
    outcome: str  # ok, invalid:<sorted fields>, not_found, conflict, unauthenticated, internal
    body: dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.body["id"])


class Edge(Protocol):
    def register(self, email: str, password: str) -> Answer: ...
    def login(self, email: str, password: str) -> Answer: ...
    def use(self, token: str | None) -> None: ...
    def create(self, data: dict[str, Any], key: str | None = None) -> Answer: ...
    def get(self, workflow_id: str) -> Answer: ...
    def list(self, **query: Any) -> Answer: ...
    def update(self, workflow_id: str, data: dict[str, Any]) -> Answer: ...
    def terminate(self, workflow_id: str, key: str | None = None) -> Answer: ...
    def delete(self, workflow_id: str) -> Answer: ...
    def run(self, workflow_id: str, key: str | None = None) -> Answer: ...
    def jobs(self, workflow_id: str, **query: Any) -> Answer: ...
    def job(self, workflow_id: str, job_id: str) -> Answer: ...
    def follow(self, workflow_id: str, job_id: str, after: int) -> Answer: ...
    def pause(self, workflow_id: str) -> Answer: ...
    def resume(self, workflow_id: str) -> Answer: ...
    def schedule(self, workflow_id: str, count: int = 3) -> Answer: ...
    def preview(self, spec: dict[str, Any], start: str | None = None) -> Answer: ...
    def fires(self, workflow_id: str) -> Answer: ...
    def events(self, workflow_id: str, job_id: str) -> Answer: ...
    def notifications(self, **query: Any) -> Answer: ...
    def mark_read(self, body: dict[str, Any]) -> Answer: ...
    def profile(self, preference: str | None = None) -> Answer: ...


class HttpEdge:
    def __init__(self, client: httpx.Client) -> None:
        self._client = client
        self._headers: dict[str, str] = {}

    def _answer(self, response: httpx.Response) -> Answer:
        body = response.json() if response.content else {}
        if "workflows" in body:
            body["ids"] = [w["id"] for w in body["workflows"]]
        status = response.status_code
        if status < 300:
            return Answer("ok", body)
        if status == 422:
            fields = sorted({d["field"] for d in body["error"]["details"]})
            return Answer("invalid:" + ",".join(fields), body)
        return Answer(
            {401: "unauthenticated", 404: "not_found", 409: "conflict"}.get(status, "internal"),
            body,
        )

    def _send(self, method: str, path: str, key: str | None = None, **kwargs: Any) -> Answer:
        headers = dict(self._headers)
        if key is not None:
            headers["Idempotency-Key"] = key
        return self._answer(self._client.request(method, path, headers=headers, **kwargs))

    def register(self, email: str, password: str) -> Answer:
        return self._send("POST", "/auth/register", json={"email": email, "password": password})

    def login(self, email: str, password: str) -> Answer:
        return self._send("POST", "/auth/login", json={"email": email, "password": password})

    def use(self, token: str | None) -> None:
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}

    def create(self, data: dict[str, Any], key: str | None = None) -> Answer:
        return self._send("POST", "/workflows", key, json=data)

    def get(self, workflow_id: str) -> Answer:
        return self._send("GET", f"/workflows/{workflow_id}")

    def list(self, **query: Any) -> Answer:
        return self._send("GET", "/workflows", params=query)

    def update(self, workflow_id: str, data: dict[str, Any]) -> Answer:
        return self._send("PUT", f"/workflows/{workflow_id}", json=data)

    def terminate(self, workflow_id: str, key: str | None = None) -> Answer:
        return self._send("POST", f"/workflows/{workflow_id}/terminate", key)

    def delete(self, workflow_id: str) -> Answer:
        return self._send("DELETE", f"/workflows/{workflow_id}")

    def run(self, workflow_id: str, key: str | None = None) -> Answer:
        return self._send("POST", f"/workflows/{workflow_id}/jobs", key)

    def jobs(self, workflow_id: str, **query: Any) -> Answer:
        return self._send("GET", f"/workflows/{workflow_id}/jobs", params=query)

    def job(self, workflow_id: str, job_id: str) -> Answer:
        return self._send("GET", f"/workflows/{workflow_id}/jobs/{job_id}")

    def follow(self, workflow_id: str, job_id: str, after: int) -> Answer:
        path = f"/workflows/{workflow_id}/jobs/{job_id}/logs/stream"
        with self._client.stream(
            "GET", path, params={"after": after}, headers=self._headers
        ) as response:
            if response.status_code == 200:
                return Answer("ok", {})
            response.read()
            return self._answer(response)


def _http_schedule_methods() -> None:
    def pause(self: HttpEdge, workflow_id: str) -> Answer:
        return self._send("POST", f"/workflows/{workflow_id}/pause")

    def resume(self: HttpEdge, workflow_id: str) -> Answer:
        return self._send("POST", f"/workflows/{workflow_id}/resume")

    def schedule(self: HttpEdge, workflow_id: str, count: int = 3) -> Answer:
        return self._send("GET", f"/workflows/{workflow_id}/schedule", params={"count": count})

    def preview(self: HttpEdge, spec: dict[str, Any], start: str | None = None) -> Answer:
        params = {"count": 2, **({"from": start} if start else {})}
        answer = self._send("POST", "/schedules/preview", params=params, json=spec)
        if answer.outcome == "ok":
            return Answer("ok", {"at": [f["at"] for f in answer.body["next"]]})
        return answer

    def fires(self: HttpEdge, workflow_id: str) -> Answer:
        return self._send("GET", f"/workflows/{workflow_id}/fires")

    for method in (pause, resume, schedule, preview, fires):
        setattr(HttpEdge, method.__name__, method)


_http_schedule_methods()


_CODES = {
    grpc.StatusCode.NOT_FOUND: "not_found",
    grpc.StatusCode.ALREADY_EXISTS: "conflict",
    grpc.StatusCode.FAILED_PRECONDITION: "conflict",
    grpc.StatusCode.UNAUTHENTICATED: "unauthenticated",
}


class GrpcEdge:
    def __init__(self, channel: grpc.Channel) -> None:
        self._auth = auth_pb2_grpc.AuthServiceStub(channel)
        self._workflows = workflows_pb2_grpc.WorkflowServiceStub(channel)
        self._jobs = jobs_pb2_grpc.JobServiceStub(channel)
        self._notifications = notifications_pb2_grpc.NotificationServiceStub(channel)
        self._metadata: tuple[tuple[str, str], ...] = ()

    def _call(self, method: Callable[..., Any], request: Any, key: str | None = None) -> Answer:
        metadata = self._metadata + ((("idempotency-key", key),) if key is not None else ())
        try:
            reply = method(request, metadata=metadata)
        except grpc.RpcError as error:
            code = error.code()  # type: ignore[attr-defined]
            if code is grpc.StatusCode.INVALID_ARGUMENT:
                status = rpc_status.from_call(error)  # type: ignore[arg-type]
                fields: set[str] = set()
                for detail in status.details if status else ():
                    bad = error_details_pb2.BadRequest()
                    detail.Unpack(bad)
                    fields |= {v.field for v in bad.field_violations}
                return Answer("invalid:" + ",".join(sorted(fields)), {})
            return Answer(_CODES.get(code, f"internal:{code}"), {})
        body: dict[str, Any] = {}
        if hasattr(reply, "id"):
            body["id"] = reply.id
        if hasattr(reply, "workflows"):
            body["ids"] = [w.id for w in reply.workflows]
        if hasattr(reply, "token"):
            body["token"] = reply.token
        return Answer("ok", body)

    def register(self, email: str, password: str) -> Answer:
        return self._call(
            self._auth.Register, auth_pb2.RegisterRequest(email=email, password=password)
        )

    def login(self, email: str, password: str) -> Answer:
        return self._call(self._auth.Login, auth_pb2.LoginRequest(email=email, password=password))

    def use(self, token: str | None) -> None:
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()

    def create(self, data: dict[str, Any], key: str | None = None) -> Answer:
        fields = dict(data)
        if "payload" in fields:
            payload = fields.pop("payload")
            fields["payload_json"] = payload if isinstance(payload, str) else json.dumps(payload)
        request = workflows_pb2.CreateWorkflowRequest(**fields)
        return self._call(self._workflows.CreateWorkflow, request, key)

    def get(self, workflow_id: str) -> Answer:
        request = workflows_pb2.GetWorkflowRequest(id=workflow_id)
        return self._call(self._workflows.GetWorkflow, request)

    def list(self, **query: Any) -> Answer:
        request = workflows_pb2.ListWorkflowsRequest(**query)
        return self._call(self._workflows.ListWorkflows, request)

    def update(self, workflow_id: str, data: dict[str, Any]) -> Answer:
        request = workflows_pb2.UpdateWorkflowRequest(id=workflow_id, **data)
        return self._call(self._workflows.UpdateWorkflow, request)

    def terminate(self, workflow_id: str, key: str | None = None) -> Answer:
        request = workflows_pb2.TerminateWorkflowRequest(id=workflow_id)
        return self._call(self._workflows.TerminateWorkflow, request, key)

    def delete(self, workflow_id: str) -> Answer:
        request = workflows_pb2.DeleteWorkflowRequest(id=workflow_id)
        return self._call(self._workflows.DeleteWorkflow, request)

    def run(self, workflow_id: str, key: str | None = None) -> Answer:
        request = jobs_pb2.RunWorkflowRequest(workflow_id=workflow_id)
        return self._call(self._jobs.RunWorkflow, request, key)

    def jobs(self, workflow_id: str, **query: Any) -> Answer:
        request = jobs_pb2.ListJobsRequest(workflow_id=workflow_id, **query)
        return self._call(self._jobs.ListJobs, request)

    def job(self, workflow_id: str, job_id: str) -> Answer:
        request = jobs_pb2.GetJobRequest(workflow_id=workflow_id, id=job_id)
        return self._call(self._jobs.GetJob, request)

    def follow(self, workflow_id: str, job_id: str, after: int) -> Answer:
        request = jobs_pb2.StreamLogsRequest(
            workflow_id=workflow_id, job_id=job_id, after_seq=after
        )
        stream = self._jobs.StreamLogs(request, metadata=self._metadata, timeout=5)
        try:
            next(iter(stream))
        except grpc.RpcError as error:
            if error.code() is grpc.StatusCode.DEADLINE_EXCEEDED:  # type: ignore[attr-defined]
                return Answer("ok", {})  # streaming, nothing to say yet
            return self._call(_raise(error), None)
        finally:
            stream.cancel()
        return Answer("ok", {})


def _grpc_schedule_methods() -> None:
    def pause(self: GrpcEdge, workflow_id: str) -> Answer:
        request = workflows_pb2.PauseWorkflowRequest(id=workflow_id)
        return self._call(self._workflows.PauseWorkflow, request)

    def resume(self: GrpcEdge, workflow_id: str) -> Answer:
        request = workflows_pb2.ResumeWorkflowRequest(id=workflow_id)
        return self._call(self._workflows.ResumeWorkflow, request)

    def schedule(self: GrpcEdge, workflow_id: str, count: int = 3) -> Answer:
        request = workflows_pb2.GetScheduleRequest(id=workflow_id, count=count)
        return self._call(self._workflows.GetSchedule, request)

    def preview(self: GrpcEdge, spec: dict[str, Any], start: str | None = None) -> Answer:
        fields = dict(spec)
        if "dst" in fields:
            fields["dst"] = workflows_pb2.DstPolicy(**fields["dst"])
        request = workflows_pb2.PreviewScheduleRequest(count=2, **fields)
        if start is not None:
            getattr(request, "from").FromDatetime(datetime.fromisoformat(start))
        try:
            reply = self._workflows.PreviewSchedule(request, metadata=self._metadata)
        except grpc.RpcError:
            return self._call(self._workflows.PreviewSchedule, request)
        return Answer(
            "ok",
            {"at": [f.at.ToDatetime().strftime("%Y-%m-%dT%H:%M:%SZ") for f in reply.next]},
        )

    def fires(self: GrpcEdge, workflow_id: str) -> Answer:
        request = workflows_pb2.ListFiresRequest(workflow_id=workflow_id)
        return self._call(self._workflows.ListFires, request)

    for method in (pause, resume, schedule, preview, fires):
        setattr(GrpcEdge, method.__name__, method)


_grpc_schedule_methods()


def _raise(error: grpc.RpcError) -> Callable[..., Any]:
    def method(request: Any, metadata: Any) -> Any:
        raise error

    return method


def signed_in(edge: Edge) -> str:
    """Register and log in a fresh user on this edge; return the email."""
    email = f"parity-{uuid.uuid4().hex[:10]}@example.com"
    assert edge.register(email, PASSWORD).outcome == "ok"
    edge.use(edge.login(email, PASSWORD).body["token"])
    return email


HEARTBEAT = {"name": "ping", "kind": "HEARTBEAT", "interval": 5}


def built(server: RunningServer, workflow_id: str) -> str:
    """Mark the workflow's build COMPLETED, as the workflow worker (not running here) would."""
    with psycopg.connect(server.database_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE workflows SET build_status = 'COMPLETED' WHERE id = %s", (workflow_id,)
        )
    return workflow_id


# --- the cases: each returns the outcome classes of its steps --------------------------------


def validation_limits(edge: Edge, server: RunningServer) -> list[str]:
    signed_in(edge)
    return [
        edge.create({**HEARTBEAT, "name": "n" * 201}).outcome,
        edge.create({**HEARTBEAT, "interval": 0}).outcome,
        edge.create({**HEARTBEAT, "payload": "{not json"}).outcome,
        edge.create({**HEARTBEAT, "payload": {"endpoint": "ftp://x"}}).outcome,
        edge.list(name="n" * 201).outcome,
        edge.list(cursor="c" * 513).outcome,
        edge.list(cursor="not-a-cursor").outcome,
        edge.list(limit=201).outcome,
        edge.list(kind="SOMETHING").outcome,
        # The same class; the field is named by each edge's own request (path workflow_id, id).
        edge.get("not-a-uuid").outcome.partition(":")[0],
        edge.update(edge.create(HEARTBEAT).id, {"interval": 0}).outcome,
        edge.jobs(edge.create(HEARTBEAT).id, limit=500).outcome,
        edge.jobs(edge.create(HEARTBEAT).id, status="NOPE").outcome,
        edge.create(HEARTBEAT, key="has space").outcome,
    ]


VALIDATION_EXPECTED = [
    "invalid:name",
    "invalid:interval",
    "invalid:payload",
    "invalid:payload.endpoint",
    "invalid:name",
    "invalid:cursor",
    "invalid:cursor",
    "invalid:limit",
    "invalid:kind",
    "invalid",
    "invalid:interval",
    "invalid:limit",
    "invalid:status",
    "invalid:Idempotency-Key",
]


def credentials(edge: Edge, server: RunningServer) -> list[str]:
    email = f"creds-{uuid.uuid4().hex[:10]}@example.com"
    return [
        edge.register("not-an-email", PASSWORD).outcome,
        edge.register(email, "short").outcome,
        edge.register(email, PASSWORD).outcome,
        edge.register(email, PASSWORD).outcome,
        edge.login("not-an-email", PASSWORD).outcome,
        edge.login(email, "wrong password").outcome,
        edge.login(email, PASSWORD).outcome,
    ]


def idempotency(edge: Edge, server: RunningServer) -> list[str]:
    signed_in(edge)
    key = uuid.uuid4().hex
    first = edge.create(HEARTBEAT, key=key)
    built(server, first.id)
    again = edge.create(HEARTBEAT, key=key)
    other_body = edge.create({**HEARTBEAT, "name": "other"}, key=key)
    run_key = uuid.uuid4().hex
    run_first = edge.run(first.id, key=run_key)
    run_again = edge.run(first.id, key=run_key)
    end_key = uuid.uuid4().hex
    ended = edge.terminate(first.id, key=end_key)
    ended_again = edge.terminate(first.id, key=end_key)
    other_workflow = edge.terminate(edge.create(HEARTBEAT).id, key=end_key)
    return [
        first.outcome,
        again.outcome,
        "same workflow" if again.id == first.id else "another workflow",
        other_body.outcome,
        run_first.outcome,
        "same job" if run_again.outcome == "ok" and run_again.id == run_first.id else "another",
        ended.outcome,
        ended_again.outcome,
        other_workflow.outcome,
    ]


def other_users(edge: Edge, server: RunningServer) -> list[str]:
    signed_in(edge)
    mine = built(server, edge.create(HEARTBEAT).id)
    job = edge.run(mine).id
    signed_in(edge)  # now someone else
    missing = str(uuid.uuid4())
    return [
        edge.get(mine).outcome,
        edge.update(mine, {"name": "taken"}).outcome,
        edge.terminate(mine).outcome,
        edge.terminate(mine, key=uuid.uuid4().hex).outcome,
        edge.run(mine).outcome,
        edge.jobs(mine).outcome,
        edge.job(mine, job).outcome,
        edge.follow(mine, job, -1).outcome,
        edge.delete(mine).outcome,
        edge.get(missing).outcome,
        edge.list().body["ids"] == [],
    ]


def conflicts(edge: Edge, server: RunningServer) -> list[str]:
    signed_in(edge)
    workflow = built(server, edge.create(HEARTBEAT).id)
    assert edge.terminate(workflow).outcome == "ok"
    return [
        edge.update(workflow, {"name": "renamed"}).outcome,
        edge.run(workflow).outcome,
        edge.terminate(workflow).outcome,  # terminating again changes nothing
    ]


def schedules(edge: Edge, server: RunningServer) -> list[Any]:
    signed_in(edge)
    cron = edge.create(
        {"name": "c", "kind": "HEARTBEAT", "cron": "0 3 * * *", "timezone": "Europe/Riga"}
    )
    riga = {"cron": "0 3 * * *", "timezone": "Europe/Riga"}
    return [
        cron.outcome,
        edge.create({**HEARTBEAT, "cron": "@daily"}).outcome,  # interval and cron
        edge.create({"name": "c", "kind": "HEARTBEAT", "cron": "@reboot"}).outcome,
        edge.create(
            {"name": "c", "kind": "HEARTBEAT", "cron": "@daily", "timezone": "Mars/X"}
        ).outcome,
        edge.create({**HEARTBEAT, "dst": {"gap": "skip"}}).outcome,
        edge.preview(riga, "2027-03-27T12:00:00+00:00").body.get("at"),
        edge.preview(
            {**riga, "dst": {"gap": "skip", "overlap": "once"}}, "2027-03-27T12:00:00+00:00"
        ).body.get("at"),
        edge.preview({"interval": 0}).outcome,
        edge.schedule(cron.id).outcome,
        edge.schedule(cron.id, count=101).outcome,
        edge.pause(cron.id).outcome,
        edge.pause(cron.id).outcome,
        edge.resume(cron.id).outcome,
        edge.fires(cron.id).outcome,
    ]


def schedules_of_others(edge: Edge, server: RunningServer) -> list[str]:
    signed_in(edge)
    mine = edge.create(HEARTBEAT).id
    signed_in(edge)
    return [
        edge.pause(mine).outcome,
        edge.resume(mine).outcome,
        edge.schedule(mine).outcome,
        edge.fires(mine).outcome,
    ]


def unauthenticated(edge: Edge, server: RunningServer) -> list[str]:
    edge.use(None)
    answers = [edge.list().outcome, edge.create(HEARTBEAT).outcome]
    edge.use("cv_not-a-token")
    answers.append(edge.get(str(uuid.uuid4())).outcome)
    return answers


CASES: dict[str, tuple[Callable[[Edge, RunningServer], list[Any]], list[Any]]] = {
    "validation limits": (validation_limits, VALIDATION_EXPECTED),
    "credentials": (
        credentials,
        [
            "invalid:email",
            "invalid:password",
            "ok",
            "conflict",
            "invalid:email",
            "unauthenticated",
            "ok",
        ],
    ),
    "idempotency, terminate included": (
        idempotency,
        ["ok", "ok", "same workflow", "conflict", "ok", "same job", "ok", "ok", "conflict"],
    ),
    "not found across users": (
        other_users,
        ["not_found"] * 10 + [True],
    ),
    "conflicts": (conflicts, ["conflict", "conflict", "ok"]),
    "schedules": (
        schedules,
        [
            "ok",
            "invalid:cron",
            "invalid:cron",
            "invalid:timezone",
            "invalid:dst",
            ["2027-03-28T01:00:00Z", "2027-03-29T00:00:00Z"],
            ["2027-03-29T00:00:00Z", "2027-03-30T00:00:00Z"],
            "invalid:interval",
            "ok",
            "invalid:count",
            "ok",
            "ok",
            "ok",
            "ok",
        ],
    ),
    "schedules of other users": (schedules_of_others, ["not_found"] * 4),
    "unauthenticated": (unauthenticated, ["unauthenticated"] * 3),
}


def _notification_methods() -> None:
    def notifications_http(self: HttpEdge, **query: Any) -> Answer:
        return self._send("GET", "/notifications", params=query)

    def mark_read_http(self: HttpEdge, body: dict[str, Any]) -> Answer:
        return self._send("POST", "/notifications/read", json=body)

    def profile_http(self: HttpEdge, preference: str | None = None) -> Answer:
        if preference is None:
            return self._send("GET", "/users/me")
        return self._send("PATCH", "/users/me", json={"notification_preference": preference})

    def notifications_grpc(self: GrpcEdge, **query: Any) -> Answer:
        request = notifications_pb2.ListNotificationsRequest(**query)
        return self._call(self._notifications.ListNotifications, request)

    def mark_read_grpc(self: GrpcEdge, body: dict[str, Any]) -> Answer:
        request = notifications_pb2.MarkNotificationsReadRequest(**body)
        return self._call(self._notifications.MarkNotificationsRead, request)

    def profile_grpc(self: GrpcEdge, preference: str | None = None) -> Answer:
        if preference is None:
            request = notifications_pb2.GetProfileRequest()
            return self._call(self._notifications.GetProfile, request)
        update = notifications_pb2.UpdateProfileRequest(notification_preference=preference)
        return self._call(self._notifications.UpdateProfile, update)

    for name, on_http, on_grpc in (
        ("notifications", notifications_http, notifications_grpc),
        ("mark_read", mark_read_http, mark_read_grpc),
        ("profile", profile_http, profile_grpc),
    ):
        setattr(HttpEdge, name, on_http)
        setattr(GrpcEdge, name, on_grpc)


_notification_methods()


def notifications(edge: Edge, server: RunningServer) -> list[str]:
    signed_in(edge)
    return [
        edge.notifications().outcome,
        edge.notifications(unread=True, limit=201).outcome,
        edge.notifications(cursor="x").outcome,
        edge.mark_read({}).outcome,
        edge.mark_read({"ids": ["nope"]}).outcome,
        edge.mark_read({"ids": [str(uuid.uuid4())], "all": True}).outcome,
        edge.mark_read({"ids": [str(uuid.uuid4())]}).outcome,
        edge.mark_read({"all": True}).outcome,
        edge.profile().outcome,
        edge.profile("LOUD").outcome,
        edge.profile("ALL").outcome,
    ]


CASES["notifications and the profile"] = (
    notifications,
    [
        "ok",
        "invalid:limit",
        "invalid:cursor",
        "invalid:ids",
        "invalid:ids.0",
        "invalid:all",
        "ok",
        "ok",
        "ok",
        "invalid:notification_preference",
        "ok",
    ],
)


def _log_methods() -> None:
    def logs_http(self: HttpEdge, workflow_id: str, job_id: str, **query: Any) -> Answer:
        return self._send("GET", f"/workflows/{workflow_id}/jobs/{job_id}/logs", params=query)

    def logs_grpc(self: GrpcEdge, workflow_id: str, job_id: str, **query: Any) -> Answer:
        request = jobs_pb2.ListLogsRequest(workflow_id=workflow_id, job_id=job_id, **query)
        return self._call(self._jobs.ListLogs, request)

    HttpEdge.logs = logs_http  # type: ignore[attr-defined]
    GrpcEdge.logs = logs_grpc  # type: ignore[attr-defined]


_log_methods()


def log_search(edge: Any, server: RunningServer) -> list[str]:
    """Searching and filtering a job's log: the same checks and ownership on both edges."""
    signed_in(edge)
    workflow = built(server, edge.create(HEARTBEAT).id)
    job = edge.run(workflow).id
    outcomes = [
        edge.logs(workflow, job, q="error").outcome,
        edge.logs(workflow, job, q="error", stream="stderr", limit=10).outcome,
        edge.logs(workflow, job, q="").outcome,
        edge.logs(workflow, job, q="x" * 201).outcome,
        edge.logs(workflow, job, stream="both").outcome,
    ]
    signed_in(edge)  # now someone else
    return [*outcomes, edge.logs(workflow, job, q="error").outcome]


CASES["log search"] = (
    log_search,
    ["ok", "ok", "invalid:q", "invalid:q", "invalid:stream", "not_found"],
)


def _job_event_methods() -> None:
    def events_http(self: HttpEdge, workflow_id: str, job_id: str) -> Answer:
        return self._send("GET", f"/workflows/{workflow_id}/jobs/{job_id}/events")

    def events_grpc(self: GrpcEdge, workflow_id: str, job_id: str) -> Answer:
        request = jobs_pb2.ListJobEventsRequest(workflow_id=workflow_id, job_id=job_id)
        return self._call(self._jobs.ListJobEvents, request)

    for name, on_http, on_grpc in (("events", events_http, events_grpc),):
        setattr(HttpEdge, name, on_http)
        setattr(GrpcEdge, name, on_grpc)


_job_event_methods()


def job_history(edge: Edge, server: RunningServer) -> list[str]:
    signed_in(edge)
    mine = built(server, edge.create(HEARTBEAT).id)
    job = edge.run(mine).id
    answers = [
        edge.events(mine, job).outcome,
        edge.events(mine, "nope").outcome,
        edge.events("nope", job).outcome,
        edge.events(mine, str(uuid.uuid4())).outcome,
    ]
    signed_in(edge)  # now someone else
    return [*answers, edge.events(mine, job).outcome]


CASES["job history"] = (
    job_history,
    ["ok", "invalid:job_id", "invalid:workflow_id", "not_found", "not_found"],
)


@pytest.fixture
def edges(server: RunningServer) -> Iterator[dict[str, Edge]]:
    with (
        httpx.Client(base_url=server.http_url, timeout=30) as client,
        grpc.insecure_channel(server.grpc_target) as channel,
    ):
        yield {"http": HttpEdge(client), "grpc": GrpcEdge(channel)}


@pytest.mark.parametrize("case", list(CASES))
def test_http_and_grpc_give_the_same_outcome(
    case: str, edges: dict[str, Edge], server: RunningServer
) -> None:
    scenario, expected = CASES[case]
    outcomes = {name: scenario(edge, server) for name, edge in edges.items()}
    assert outcomes["http"] == outcomes["grpc"], outcomes
    assert outcomes["grpc"] == expected
