"""The gRPC edge: servicers over the application layer, plus health checking and reflection."""

from __future__ import annotations

from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from chronoverse import __version__
from chronoverse.v1 import (
    analytics_pb2,
    analytics_pb2_grpc,
    auth_pb2,
    auth_pb2_grpc,
    jobs_pb2,
    jobs_pb2_grpc,
    notifications_pb2,
    notifications_pb2_grpc,
    server_pb2,
    server_pb2_grpc,
    webhooks_pb2,
    webhooks_pb2_grpc,
    workflows_pb2,
    workflows_pb2_grpc,
)
from services.server.context import ServerContext
from services.server.grpc.analytics import AnalyticsService
from services.server.grpc.auth import AuthService
from services.server.grpc.jobs import JobService
from services.server.grpc.notifications import NotificationService
from services.server.grpc.webhooks import WebhookService
from services.server.grpc.workflows import WorkflowService
from services.server.usecases import Application


class ServerInfoService(server_pb2_grpc.ServerInfoServiceServicer):
    def GetServerInfo(
        self, request: server_pb2.GetServerInfoRequest, context: grpc.ServicerContext
    ) -> server_pb2.GetServerInfoResponse:
        return server_pb2.GetServerInfoResponse(version=__version__, api_versions=["v1"])


def create_grpc_server(context: ServerContext) -> tuple[grpc.Server, health.HealthServicer, int]:
    """Build (not start) the server; return it, its health servicer and the bound port."""
    settings = context.settings
    application = Application(context)
    # A streaming call holds its thread while it follows a log: streams get threads of their own
    # (JobService caps them at grpc_max_streams), so unary calls always have grpc_max_workers.
    # Calls past every thread wait in a bounded queue, then get RESOURCE_EXHAUSTED.
    threads = settings.grpc_max_workers + settings.grpc_max_streams
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="grpc"),
        maximum_concurrent_rpcs=threads * 4,
    )
    # The generated registration functions are untyped.
    server_pb2_grpc.add_ServerInfoServiceServicer_to_server(ServerInfoService(), server)  # type: ignore[no-untyped-call]
    auth_pb2_grpc.add_AuthServiceServicer_to_server(AuthService(application), server)  # type: ignore[no-untyped-call]
    workflows_pb2_grpc.add_WorkflowServiceServicer_to_server(  # type: ignore[no-untyped-call]
        WorkflowService(application), server
    )
    jobs_pb2_grpc.add_JobServiceServicer_to_server(JobService(application), server)  # type: ignore[no-untyped-call]
    notifications_pb2_grpc.add_NotificationServiceServicer_to_server(  # type: ignore[no-untyped-call]
        NotificationService(application), server
    )
    analytics_pb2_grpc.add_AnalyticsServiceServicer_to_server(  # type: ignore[no-untyped-call]
        AnalyticsService(application), server
    )
    webhooks_pb2_grpc.add_WebhookServiceServicer_to_server(  # type: ignore[no-untyped-call]
        WebhookService(application), server
    )
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    api = [
        server_pb2.DESCRIPTOR.services_by_name["ServerInfoService"].full_name,
        auth_pb2.DESCRIPTOR.services_by_name["AuthService"].full_name,
        workflows_pb2.DESCRIPTOR.services_by_name["WorkflowService"].full_name,
        jobs_pb2.DESCRIPTOR.services_by_name["JobService"].full_name,
        webhooks_pb2.DESCRIPTOR.services_by_name["WebhookService"].full_name,
        notifications_pb2.DESCRIPTOR.services_by_name["NotificationService"].full_name,
        analytics_pb2.DESCRIPTOR.services_by_name["AnalyticsService"].full_name,
    ]
    reflection.enable_server_reflection(
        [*api, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME],
        server,
    )
    port = server.add_insecure_port(f"{settings.grpc_host}:{settings.grpc_port}")
    for name in ("", *api):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return server, health_servicer, port
