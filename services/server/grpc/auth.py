"""gRPC AuthService: register, log in, log out."""

from __future__ import annotations

import grpc

from chronoverse.v1 import auth_pb2, auth_pb2_grpc
from services.server.grpc import convert
from services.server.grpc.base import Servicer
from services.server.grpc.errors import handles_errors
from services.server.schemas import Credentials, parse_model


class AuthService(Servicer, auth_pb2_grpc.AuthServiceServicer):
    @handles_errors
    def Register(
        self, request: auth_pb2.RegisterRequest, context: grpc.ServicerContext
    ) -> auth_pb2.RegisterResponse:
        body = parse_model(Credentials, {"email": request.email, "password": request.password})
        user = self.api.accounts.register(body)
        return auth_pb2.RegisterResponse(
            id=str(user.id), email=user.email, created_at=convert.timestamp(user.created_at)
        )

    @handles_errors
    def Login(
        self, request: auth_pb2.LoginRequest, context: grpc.ServicerContext
    ) -> auth_pb2.LoginResponse:
        body = parse_model(Credentials, {"email": request.email, "password": request.password})
        issued = self.api.accounts.login(body)
        return auth_pb2.LoginResponse(
            token=issued.token, expires_at=convert.timestamp(issued.expires_at)
        )

    @handles_errors
    def Logout(
        self, request: auth_pb2.LogoutRequest, context: grpc.ServicerContext
    ) -> auth_pb2.LogoutResponse:
        self.api.accounts.logout(self.who(context))
        return auth_pb2.LogoutResponse()
