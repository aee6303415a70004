"""gRPC JobService: manual runs, a workflow's jobs, each job's history, and its logs."""

from __future__ import annotations

import threading
from collections.abc import Generator, Iterator

import grpc

from chronoverse.v1 import jobs_pb2, jobs_pb2_grpc
from services.server.grpc import convert
from services.server.grpc.base import Servicer, fields, metadata
from services.server.grpc.errors import abort, handles_errors
from services.server.logs import AttemptStart, FollowEvent, Lines, LogEnd
from services.server.schemas import JobQuery, LogQuery, parse_model
from services.server.usecases import Application, JobRef


class JobService(Servicer, jobs_pb2_grpc.JobServiceServicer):
    def __init__(self, application: Application) -> None:
        super().__init__(application)
        # StreamLogs calls served at once: each holds a thread while it follows.
        self._streams = threading.BoundedSemaphore(application.context.settings.grpc_max_streams)

    @handles_errors
    def RunWorkflow(
        self, request: jobs_pb2.RunWorkflowRequest, context: grpc.ServicerContext
    ) -> jobs_pb2.Job:
        who = self.who(context)
        workflow_id = convert.uuid(request.workflow_id, "workflow_id")
        key = metadata(context, "idempotency-key")
        return convert.job(self.api.jobs.run(who, workflow_id, idempotency_key=key).body)

    @handles_errors
    def ListJobs(
        self, request: jobs_pb2.ListJobsRequest, context: grpc.ServicerContext
    ) -> jobs_pb2.ListJobsResponse:
        who = self.who(context)
        data = fields(request, ("status", "trigger"))
        if request.limit:  # 0 is proto3's unset: the default page size
            data["limit"] = request.limit
        if request.cursor:
            data["cursor"] = request.cursor
        query = parse_model(JobQuery, data)
        workflow_id = convert.uuid(request.workflow_id, "workflow_id")
        page = self.api.jobs.list(who, workflow_id, query)
        return jobs_pb2.ListJobsResponse(
            jobs=[convert.job(j) for j in page.jobs], next_cursor=page.next_cursor or ""
        )

    @handles_errors
    def GetJob(
        self, request: jobs_pb2.GetJobRequest, context: grpc.ServicerContext
    ) -> jobs_pb2.Job:
        who = self.who(context)
        workflow_id = convert.uuid(request.workflow_id, "workflow_id")
        return convert.job(self.api.jobs.get(who, workflow_id, convert.uuid(request.id)))

    @handles_errors
    def ListLogs(
        self, request: jobs_pb2.ListLogsRequest, context: grpc.ServicerContext
    ) -> jobs_pb2.ListLogsResponse:
        who = self.who(context)
        data = fields(request, ("attempt", "stream", "q"))
        if request.limit:  # 0 is proto3's unset: the default page size
            data["limit"] = request.limit
        if request.cursor:
            data["cursor"] = request.cursor
        query = parse_model(LogQuery, data)
        ref = JobRef(
            job_id=convert.uuid(request.job_id, "job_id"),
            workflow_id=convert.uuid(request.workflow_id, "workflow_id"),
        )
        return convert.log_page(self.api.logs.page(who, ref, query))

    @handles_errors
    def ListJobEvents(
        self, request: jobs_pb2.ListJobEventsRequest, context: grpc.ServicerContext
    ) -> jobs_pb2.ListJobEventsResponse:
        who = self.who(context)
        workflow_id = convert.uuid(request.workflow_id, "workflow_id")
        job_id = convert.uuid(request.job_id, "job_id")
        return convert.job_events(self.api.jobs.events(who, workflow_id, job_id))

    def StreamLogs(
        self, request: jobs_pb2.StreamLogsRequest, context: grpc.ServicerContext
    ) -> Iterator[jobs_pb2.LogEvent]:
        if not self._streams.acquire(blocking=False):
            abort(
                context,
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                "this server follows as many log streams as it may; try again shortly",
                retry_after_s=5,
            )
        try:
            yield from self._stream_logs(request, context)
        finally:
            self._streams.release()

    def _stream_logs(
        self, request: jobs_pb2.StreamLogsRequest, context: grpc.ServicerContext
    ) -> Iterator[jobs_pb2.LogEvent]:
        events = self._follow(request, context)
        try:
            for event in events:
                if not context.is_active():
                    return
                if isinstance(event, Lines):
                    for line in event.lines:
                        yield convert.log_line(line, event.attempt)
                elif isinstance(event, AttemptStart):
                    yield jobs_pb2.LogEvent(attempt=jobs_pb2.LogAttempt(attempt=event.attempt))
                elif isinstance(event, LogEnd):
                    yield convert.log_end(event)
                    return
        finally:
            events.close()

    @handles_errors
    def _follow(
        self, request: jobs_pb2.StreamLogsRequest, context: grpc.ServicerContext
    ) -> Generator[FollowEvent, None, None]:
        """Check the caller, the job and the start before the stream begins."""
        who = self.who(context)
        ref = JobRef(
            job_id=convert.uuid(request.job_id, "job_id"),
            workflow_id=convert.uuid(request.workflow_id, "workflow_id"),
        )
        after = request.after_seq if request.HasField("after_seq") else None
        attempt = request.attempt if request.HasField("attempt") else None
        follower = self.api.logs.follow(
            who, ref, attempt=attempt, after=after, after_field="after_seq"
        )
        return follower.__iter__()
