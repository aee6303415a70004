"""The gRPC API: the same operations and validation as HTTP, plus health checking and reflection."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Generator, Iterator
from concurrent import futures
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

import grpc
from google.protobuf import any_pb2
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from grpc_status import rpc_status

from chronoverse import __version__
from chronoverse.accounts import Principal
from chronoverse.domain import BuildStatus, JobStatus, JobTrigger, WorkflowKind
from chronoverse.errors import (
    AuthenticationError,
    ConflictError,
    FieldError,
    InvalidFieldsError,
    NotFoundError,
)
from chronoverse.logs import LogLine
from chronoverse.postgres import Conn
from chronoverse.secrets import SecretError, mask_payload
from chronoverse.v1 import (
    auth_pb2,
    auth_pb2_grpc,
    jobs_pb2,
    jobs_pb2_grpc,
    server_pb2,
    server_pb2_grpc,
    workflows_pb2,
    workflows_pb2_grpc,
)
from services.server.context import ServerContext
from services.server.http_errors import secret_unreadable_message
from services.server.logs import FollowEvent, LogEnd, LogFollower
from services.server.schemas import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    Credentials,
    JobOut,
    WorkflowCreate,
    WorkflowOut,
    WorkflowUpdate,
    parse_model,
)
from services.server.store import idempotency, jobs, workflows

logger = logging.getLogger(__name__)
R = TypeVar("R")
# Conflicts that mean "it exists already" rather than "not in a state for this".
_ALREADY_EXISTS = {"email_taken"}


def _abort(
    context: grpc.ServicerContext,
    code: grpc.StatusCode,
    message: str,
    fields: list[FieldError] | None = None,
) -> None:
    status = status_pb2.Status(code=code.value[0], message=message)
    if fields:
        detail = any_pb2.Any()
        detail.Pack(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field=f.field, description=f.message
                    )
                    for f in fields
                ]
            )
        )
        status.details.append(detail)
    context.abort_with_status(rpc_status.to_status(status))


def handles_errors(method: Callable[..., R]) -> Callable[..., R]:
    """Map Chronoverse errors to gRPC status codes; anything else is INTERNAL and logged."""

    @functools.wraps(method)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> R:
        try:
            return method(self, request, context)
        except InvalidFieldsError as exc:
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc), exc.errors)
        except NotFoundError as exc:
            _abort(context, grpc.StatusCode.NOT_FOUND, str(exc))
        except ConflictError as exc:
            code = (
                grpc.StatusCode.ALREADY_EXISTS
                if exc.code in _ALREADY_EXISTS
                else grpc.StatusCode.FAILED_PRECONDITION
            )
            _abort(context, code, exc.message)
        except AuthenticationError as exc:
            _abort(context, grpc.StatusCode.UNAUTHENTICATED, exc.message)
        except SecretError as exc:
            # As HTTP's 409 secret_unreadable: the operator must migrate or restore the key.
            logger.warning(
                "stored secret unreadable in %s: %s",
                method.__name__,
                exc,
                extra={"action": "secret_unreadable"},
            )
            _abort(context, grpc.StatusCode.FAILED_PRECONDITION, secret_unreadable_message(exc))
        raise AssertionError("unreachable: abort raises")

    return wrapper


def _metadata(context: grpc.ServicerContext, name: str) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == name:
            return value if isinstance(value, str) else value.decode()
    return None


def _timestamp(value: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def _workflow_message(data: dict[str, Any]) -> workflows_pb2.Workflow:
    """A WorkflowOut's JSON form (what idempotent replays store) as a message."""
    out = WorkflowOut.model_validate(data)
    message = workflows_pb2.Workflow(
        id=str(out.id),
        user_id=str(out.user_id),
        name=out.name,
        kind=out.kind.value,
        # Masked by WorkflowOut.of already; again here for responses saved before masking.
        payload_json=json.dumps(mask_payload(out.kind, out.payload)),
        interval=out.interval,
        max_consecutive_job_failures_allowed=out.max_consecutive_job_failures_allowed,
        consecutive_job_failures_count=out.consecutive_job_failures_count,
        build_status=out.build_status.value,
        generation=out.generation,
        created_at=_timestamp(out.created_at),
        updated_at=_timestamp(out.updated_at),
    )
    if out.build_error is not None:
        message.build_error = out.build_error
    if out.terminated_at is not None:
        message.terminated_at.CopyFrom(_timestamp(out.terminated_at))
    if out.terminated_reason is not None:
        message.terminated_reason = out.terminated_reason
    return message


def _uuid(value: str, field: str = "id") -> UUID:
    try:
        return UUID(value)
    except ValueError as exc:
        raise InvalidFieldsError([FieldError(field, "must be a UUID")]) from exc


def _payload(payload_json: str) -> Any:
    return payload_json if payload_json else {}


class AuthService(auth_pb2_grpc.AuthServiceServicer):
    def __init__(self, context: ServerContext) -> None:
        self._context = context

    @handles_errors
    def Register(
        self, request: auth_pb2.RegisterRequest, context: grpc.ServicerContext
    ) -> auth_pb2.RegisterResponse:
        body = parse_model(Credentials, {"email": request.email, "password": request.password})
        user = self._context.accounts.register(body.email, body.password)
        return auth_pb2.RegisterResponse(
            id=str(user.id), email=user.email, created_at=_timestamp(user.created_at)
        )

    @handles_errors
    def Login(
        self, request: auth_pb2.LoginRequest, context: grpc.ServicerContext
    ) -> auth_pb2.LoginResponse:
        issued = self._context.accounts.login(request.email, request.password)
        return auth_pb2.LoginResponse(token=issued.token, expires_at=_timestamp(issued.expires_at))

    @handles_errors
    def Logout(
        self, request: auth_pb2.LogoutRequest, context: grpc.ServicerContext
    ) -> auth_pb2.LogoutResponse:
        self._context.accounts.revoke(
            self._context.accounts.authenticate(_metadata(context, "authorization"))
        )
        return auth_pb2.LogoutResponse()


class WorkflowService(workflows_pb2_grpc.WorkflowServiceServicer):
    def __init__(self, context: ServerContext) -> None:
        self._context = context

    def _principal(self, context: grpc.ServicerContext) -> Principal:
        return self._context.accounts.authenticate(_metadata(context, "authorization"))

    @handles_errors
    def CreateWorkflow(
        self, request: workflows_pb2.CreateWorkflowRequest, context: grpc.ServicerContext
    ) -> workflows_pb2.Workflow:
        who = self._principal(context)
        data: dict[str, Any] = {
            "name": request.name,
            "kind": request.kind,
            "payload": _payload(request.payload_json),
            "interval": request.interval,
        }
        if request.HasField("max_consecutive_job_failures_allowed"):
            data["max_consecutive_job_failures_allowed"] = (
                request.max_consecutive_job_failures_allowed
            )
        body = parse_model(WorkflowCreate, data)

        def operation(conn: Conn) -> tuple[int, Any]:
            created = workflows.create(
                conn,
                who.user_id,
                body,
                secrets=self._context.secrets,
                rules=self._context.rules,
            )
            return 201, WorkflowOut.of(created).model_dump(mode="json")

        with self._context.transaction() as conn:
            outcome = idempotency.run(
                conn,
                user_id=who.user_id,
                key=_metadata(context, "idempotency-key"),
                request_fingerprint=idempotency.fingerprint(
                    "POST", "/workflows", body.model_dump_json()
                ),
                ttl_s=self._context.settings.idempotency_key_ttl_s,
                operation=operation,
            )
        return _workflow_message(outcome.body)

    @handles_errors
    def GetWorkflow(
        self, request: workflows_pb2.GetWorkflowRequest, context: grpc.ServicerContext
    ) -> workflows_pb2.Workflow:
        who = self._principal(context)
        with self._context.transaction() as conn:
            found = workflows.get(conn, who.user_id, _uuid(request.id))
        return _workflow_message(WorkflowOut.of(found).model_dump(mode="json"))

    @handles_errors
    def ListWorkflows(
        self, request: workflows_pb2.ListWorkflowsRequest, context: grpc.ServicerContext
    ) -> workflows_pb2.ListWorkflowsResponse:
        who = self._principal(context)
        errors = []
        limit = request.limit or DEFAULT_PAGE_SIZE
        if not 1 <= limit <= MAX_PAGE_SIZE:
            errors.append(FieldError("limit", f"must be 1 to {MAX_PAGE_SIZE}"))
        kind = build_status = None
        if request.HasField("kind"):
            try:
                kind = WorkflowKind(request.kind)
            except ValueError:
                errors.append(FieldError("kind", "must be HEARTBEAT or CONTAINER"))
        if request.HasField("build_status"):
            try:
                build_status = BuildStatus(request.build_status)
            except ValueError:
                errors.append(
                    FieldError("build_status", f"must be one of {', '.join(BuildStatus)}")
                )
        if errors:
            raise InvalidFieldsError(errors)
        query = workflows.ListFilter(
            kind=kind,
            build_status=build_status,
            terminated=request.terminated if request.HasField("terminated") else None,
            name_contains=request.name if request.HasField("name") else None,
            limit=limit,
            cursor=request.cursor or None,
        )
        with self._context.transaction() as conn:
            page = workflows.list_page(conn, who.user_id, query)
        return workflows_pb2.ListWorkflowsResponse(
            workflows=[
                _workflow_message(WorkflowOut.of(w).model_dump(mode="json")) for w in page.workflows
            ],
            next_cursor=page.next_cursor or "",
        )

    @handles_errors
    def UpdateWorkflow(
        self, request: workflows_pb2.UpdateWorkflowRequest, context: grpc.ServicerContext
    ) -> workflows_pb2.Workflow:
        who = self._principal(context)
        data: dict[str, Any] = {}
        for field in ("name", "interval", "max_consecutive_job_failures_allowed"):
            if request.HasField(field):
                data[field] = getattr(request, field)
        if request.HasField("payload_json"):
            data["payload"] = _payload(request.payload_json)
        body = parse_model(WorkflowUpdate, data)
        with self._context.transaction() as conn:
            updated = workflows.update(
                conn,
                who.user_id,
                _uuid(request.id),
                body,
                secrets=self._context.secrets,
                rules=self._context.rules,
            )
        return _workflow_message(WorkflowOut.of(updated).model_dump(mode="json"))

    @handles_errors
    def TerminateWorkflow(
        self, request: workflows_pb2.TerminateWorkflowRequest, context: grpc.ServicerContext
    ) -> workflows_pb2.Workflow:
        who = self._principal(context)
        with self._context.transaction() as conn:
            done = workflows.terminate(conn, who.user_id, _uuid(request.id))
        return _workflow_message(WorkflowOut.of(done).model_dump(mode="json"))

    @handles_errors
    def DeleteWorkflow(
        self, request: workflows_pb2.DeleteWorkflowRequest, context: grpc.ServicerContext
    ) -> workflows_pb2.DeleteWorkflowResponse:
        who = self._principal(context)
        with self._context.transaction() as conn:
            workflows.delete(conn, who.user_id, _uuid(request.id))
        return workflows_pb2.DeleteWorkflowResponse()


def _job_message(data: dict[str, Any]) -> jobs_pb2.Job:
    """A JobOut's JSON form as a message."""
    out = JobOut.model_validate(data)
    message = jobs_pb2.Job(
        id=str(out.id),
        workflow_id=str(out.workflow_id),
        status=out.status.value,
        trigger=out.trigger.value,
        scheduled_at=_timestamp(out.scheduled_at),
        attempt=out.attempt,
    )
    for field in ("queued_at", "started_at", "completed_at"):
        value = getattr(out, field)
        if value is not None:
            getattr(message, field).CopyFrom(_timestamp(value))
    if out.exit_code is not None:
        message.exit_code = out.exit_code
    if out.failure_kind is not None:
        message.failure_kind = out.failure_kind.value
    if out.error is not None:
        message.error = out.error
    return message


class JobService(jobs_pb2_grpc.JobServiceServicer):
    def __init__(self, context: ServerContext) -> None:
        self._context = context

    @handles_errors
    def RunWorkflow(
        self, request: jobs_pb2.RunWorkflowRequest, context: grpc.ServicerContext
    ) -> jobs_pb2.Job:
        who = self._context.accounts.authenticate(_metadata(context, "authorization"))
        workflow_id = _uuid(request.workflow_id, "workflow_id")
        key = _metadata(context, "idempotency-key")

        def operation(conn: Conn) -> tuple[int, Any]:
            job = jobs.run_now(conn, who.user_id, workflow_id, idempotency_key=key)
            return 201, JobOut.of(job).model_dump(mode="json")

        with self._context.transaction() as conn:
            outcome = idempotency.run(
                conn,
                user_id=who.user_id,
                key=key,
                request_fingerprint=idempotency.fingerprint(
                    "POST", f"/workflows/{workflow_id}/jobs", ""
                ),
                ttl_s=self._context.settings.idempotency_key_ttl_s,
                operation=operation,
            )
        return _job_message(outcome.body)

    @handles_errors
    def ListJobs(
        self, request: jobs_pb2.ListJobsRequest, context: grpc.ServicerContext
    ) -> jobs_pb2.ListJobsResponse:
        who = self._context.accounts.authenticate(_metadata(context, "authorization"))
        errors = []
        limit = request.limit or DEFAULT_PAGE_SIZE
        if not 1 <= limit <= MAX_PAGE_SIZE:
            errors.append(FieldError("limit", f"must be 1 to {MAX_PAGE_SIZE}"))
        status = trigger = None
        if request.HasField("status"):
            try:
                status = JobStatus(request.status)
            except ValueError:
                errors.append(FieldError("status", f"must be one of {', '.join(JobStatus)}"))
        if request.HasField("trigger"):
            try:
                trigger = JobTrigger(request.trigger)
            except ValueError:
                errors.append(FieldError("trigger", "must be AUTOMATIC or MANUAL"))
        if errors:
            raise InvalidFieldsError(errors)
        query = jobs.JobFilter(
            status=status, trigger=trigger, limit=limit, cursor=request.cursor or None
        )
        with self._context.transaction() as conn:
            page = jobs.list_page(
                conn, who.user_id, _uuid(request.workflow_id, "workflow_id"), query
            )
        return jobs_pb2.ListJobsResponse(
            jobs=[_job_message(JobOut.of(j).model_dump(mode="json")) for j in page.jobs],
            next_cursor=page.next_cursor or "",
        )

    @handles_errors
    def GetJob(
        self, request: jobs_pb2.GetJobRequest, context: grpc.ServicerContext
    ) -> jobs_pb2.Job:
        who = self._context.accounts.authenticate(_metadata(context, "authorization"))
        with self._context.transaction() as conn:
            job = jobs.get(
                conn, who.user_id, _uuid(request.workflow_id, "workflow_id"), _uuid(request.id)
            )
        return _job_message(JobOut.of(job).model_dump(mode="json"))

    def StreamLogs(
        self, request: jobs_pb2.StreamLogsRequest, context: grpc.ServicerContext
    ) -> Iterator[jobs_pb2.LogEvent]:
        follower = self._log_follower(request, context)
        try:
            for event in follower:
                if not context.is_active():
                    return
                if isinstance(event, LogLine):
                    yield jobs_pb2.LogEvent(
                        line=jobs_pb2.LogLine(
                            seq=event.seq,
                            stream=event.stream.value,
                            ts=_timestamp(event.ts),
                            line=event.line,
                        )
                    )
                elif isinstance(event, LogEnd):
                    yield jobs_pb2.LogEvent(end=jobs_pb2.LogEnd(last_seq=event.last_seq))
                    return
        finally:
            follower.close()

    @handles_errors
    def _log_follower(
        self, request: jobs_pb2.StreamLogsRequest, context: grpc.ServicerContext
    ) -> Generator[FollowEvent, None, None]:
        who = self._context.accounts.authenticate(_metadata(context, "authorization"))
        after = request.after_seq if request.HasField("after_seq") else -1
        if after < -1:
            raise InvalidFieldsError([FieldError("after_seq", "must be -1 or more")])
        with self._context.transaction() as conn:
            job = jobs.get(
                conn,
                who.user_id,
                _uuid(request.workflow_id, "workflow_id"),
                _uuid(request.job_id, "job_id"),
            )
        return LogFollower(self._context.pool, self._context.redis, job.id, after=after).__iter__()


class ServerInfoService(server_pb2_grpc.ServerInfoServiceServicer):
    def GetServerInfo(
        self, request: server_pb2.GetServerInfoRequest, context: grpc.ServicerContext
    ) -> server_pb2.GetServerInfoResponse:
        return server_pb2.GetServerInfoResponse(version=__version__, api_versions=["v1"])


def create_grpc_server(context: ServerContext) -> tuple[grpc.Server, health.HealthServicer, int]:
    """Build (not start) the server; return it, its health servicer and the bound port."""
    settings = context.settings
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=settings.grpc_max_workers))
    # The generated registration functions are untyped.
    server_pb2_grpc.add_ServerInfoServiceServicer_to_server(ServerInfoService(), server)  # type: ignore[no-untyped-call]
    auth_pb2_grpc.add_AuthServiceServicer_to_server(AuthService(context), server)  # type: ignore[no-untyped-call]
    workflows_pb2_grpc.add_WorkflowServiceServicer_to_server(WorkflowService(context), server)  # type: ignore[no-untyped-call]
    jobs_pb2_grpc.add_JobServiceServicer_to_server(JobService(context), server)  # type: ignore[no-untyped-call]
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    api = [
        server_pb2.DESCRIPTOR.services_by_name["ServerInfoService"].full_name,
        auth_pb2.DESCRIPTOR.services_by_name["AuthService"].full_name,
        workflows_pb2.DESCRIPTOR.services_by_name["WorkflowService"].full_name,
        jobs_pb2.DESCRIPTOR.services_by_name["JobService"].full_name,
    ]
    reflection.enable_server_reflection(
        [*api, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME],
        server,
    )
    port = server.add_insecure_port(f"{settings.grpc_host}:{settings.grpc_port}")
    for name in ("", *api):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return server, health_servicer, port
