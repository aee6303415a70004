"""What every gRPC servicer shares: the application layer, call metadata, and the caller."""

from __future__ import annotations

from typing import Any

import grpc

from chronoverse.accounts import Principal
from services.server.usecases import Application


def metadata(context: grpc.ServicerContext, name: str) -> str | None:
    """A call metadata value (gRPC's request headers), or None."""
    for key, value in context.invocation_metadata() or ():
        if key == name:
            return value if isinstance(value, str) else value.decode()
    return None


def fields(request: Any, names: tuple[str, ...]) -> dict[str, Any]:
    """The request's fields among ``names`` that were set (proto3 `optional` presence)."""
    return {name: getattr(request, name) for name in names if request.HasField(name)}


class Servicer:
    """A servicer over the application layer; methods are parse, call, convert."""

    def __init__(self, application: Application) -> None:
        self.api = application

    def who(self, context: grpc.ServicerContext) -> Principal:
        """The caller, from `authorization: Bearer <token>` metadata."""
        return self.api.accounts.authenticate(metadata(context, "authorization"))
