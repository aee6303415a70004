"""The gRPC server: API services, health checking and reflection."""

from __future__ import annotations

from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from chronoverse import __version__
from chronoverse.v1 import server_pb2, server_pb2_grpc
from services.server.settings import Settings


class ServerInfoService(server_pb2_grpc.ServerInfoServiceServicer):
    def GetServerInfo(
        self, request: server_pb2.GetServerInfoRequest, context: grpc.ServicerContext
    ) -> server_pb2.GetServerInfoResponse:
        return server_pb2.GetServerInfoResponse(version=__version__, api_versions=["v1"])


def create_grpc_server(settings: Settings) -> tuple[grpc.Server, health.HealthServicer, int]:
    """Build (not start) the server; return it, its health servicer and the bound port."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=settings.grpc_max_workers))
    # The generated registration functions are untyped.
    server_pb2_grpc.add_ServerInfoServiceServicer_to_server(ServerInfoService(), server)  # type: ignore[no-untyped-call]
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = [
        server_pb2.DESCRIPTOR.services_by_name["ServerInfoService"].full_name,
        health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
        reflection.SERVICE_NAME,
    ]
    reflection.enable_server_reflection(names, server)
    port = server.add_insecure_port(f"{settings.grpc_host}:{settings.grpc_port}")
    for name in ("", *names[:1]):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return server, health_servicer, port
