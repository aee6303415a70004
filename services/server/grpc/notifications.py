"""gRPC NotificationService: your notifications, marking them read, and your profile."""

from __future__ import annotations

from typing import Any

import grpc

from chronoverse.v1 import notifications_pb2, notifications_pb2_grpc
from services.server.grpc import convert
from services.server.grpc.base import Servicer
from services.server.grpc.errors import handles_errors
from services.server.schemas import (
    MarkReadIn,
    NotificationOut,
    NotificationQuery,
    ProfileOut,
    ProfileUpdate,
    parse_model,
)


class NotificationService(Servicer, notifications_pb2_grpc.NotificationServiceServicer):
    @handles_errors
    def ListNotifications(
        self, request: notifications_pb2.ListNotificationsRequest, context: grpc.ServicerContext
    ) -> notifications_pb2.ListNotificationsResponse:
        who = self.who(context)
        data: dict[str, Any] = {"unread": request.unread}
        if request.limit:  # 0 is proto3's unset: the default page size
            data["limit"] = request.limit
        if request.cursor:
            data["cursor"] = request.cursor
        page = self.api.notifications.list(who, parse_model(NotificationQuery, data))
        return notifications_pb2.ListNotificationsResponse(
            notifications=[_notification(n) for n in page.notifications],
            next_cursor=page.next_cursor or "",
        )

    @handles_errors
    def MarkNotificationsRead(
        self,
        request: notifications_pb2.MarkNotificationsReadRequest,
        context: grpc.ServicerContext,
    ) -> notifications_pb2.MarkNotificationsReadResponse:
        who = self.who(context)
        data: dict[str, Any] = {}
        if request.ids:  # an empty repeated field is proto3's unset
            data["ids"] = list(request.ids)
        if request.all:
            data["all"] = True
        done = self.api.notifications.mark_read(who, parse_model(MarkReadIn, data))
        return notifications_pb2.MarkNotificationsReadResponse(marked=done.marked)

    @handles_errors
    def GetProfile(
        self, request: notifications_pb2.GetProfileRequest, context: grpc.ServicerContext
    ) -> notifications_pb2.Profile:
        return _profile(self.api.notifications.profile(self.who(context)))

    @handles_errors
    def UpdateProfile(
        self, request: notifications_pb2.UpdateProfileRequest, context: grpc.ServicerContext
    ) -> notifications_pb2.Profile:
        who = self.who(context)
        update = parse_model(
            ProfileUpdate, {"notification_preference": request.notification_preference}
        )
        return _profile(self.api.notifications.update_profile(who, update))


def _notification(n: NotificationOut) -> notifications_pb2.Notification:
    message = notifications_pb2.Notification(
        id=str(n.id),
        kind=n.kind.value,
        title=n.title,
        message=n.message,
        entity_type=n.entity_type.value,
        entity_id=str(n.entity_id),
        created_at=convert.timestamp(n.created_at),
    )
    if n.action_url is not None:
        message.action_url = n.action_url
    if n.read_at is not None:
        message.read_at.CopyFrom(convert.timestamp(n.read_at))
    return message


def _profile(p: ProfileOut) -> notifications_pb2.Profile:
    return notifications_pb2.Profile(
        id=str(p.id),
        email=p.email,
        created_at=convert.timestamp(p.created_at),
        notification_preference=p.notification_preference,
    )
