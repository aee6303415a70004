"""gRPC AuthService: register, log in, log out."""

from __future__ import annotations

import grpc

from chronoverse.v1 import auth_pb2, auth_pb2_grpc
from services.server.grpc import convert
from services.server.grpc.base import Servicer
from services.server.grpc.errors import handles_errors
from services.server.schemas import Credentials, parse_model


def peer_address(context: grpc.ServicerContext) -> str | None:
    """The caller's address from gRPC's peer string (``ipv4:1.2.3.4:5``, ``ipv6:[::1]:5``)."""
    peer = context.peer() or ""
    family, _, rest = peer.partition(":")
    if family == "ipv4":
        return rest.rpartition(":")[0] or None
    if family == "ipv6":
        return rest.rpartition(":")[0].strip("[]") or None
    return None  # e.g. a unix socket: no address to count


class AuthService(Servicer, auth_pb2_grpc.AuthServiceServicer):
    @handles_errors
    def Register(
        self, request: auth_pb2.RegisterRequest, context: grpc.ServicerContext
    ) -> auth_pb2.RegisterResponse:
        body = parse_model(Credentials, {"email": request.email, "password": request.password})
        user = self.api.accounts.register(body, client=peer_address(context))
        return auth_pb2.RegisterResponse(
            id=str(user.id), email=user.email, created_at=convert.timestamp(user.created_at)
        )

    @handles_errors
    def Login(
        self, request: auth_pb2.LoginRequest, context: grpc.ServicerContext
    ) -> auth_pb2.LoginResponse:
        body = parse_model(Credentials, {"email": request.email, "password": request.password})
        issued = self.api.accounts.login(body, client=peer_address(context))
        return auth_pb2.LoginResponse(
            token=issued.token, expires_at=convert.timestamp(issued.expires_at)
        )

    @handles_errors
    def Logout(
        self, request: auth_pb2.LogoutRequest, context: grpc.ServicerContext
    ) -> auth_pb2.LogoutResponse:
        self.api.accounts.logout(self.who(context))
        return auth_pb2.LogoutResponse()
