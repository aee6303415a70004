"""The application layer: every use case of the API, called alike by every edge.

An edge (the HTTP routes, the gRPC servicers, later the web pages) parses its input into the typed
requests of :mod:`services.server.schemas`, calls one method here, and maps the result or the
:class:`~chronoverse.errors.ChronoverseError` it raises to its own wire format. Validation,
ownership checks, transactions, Idempotency-Key handling and the conversion of domain values to
results live here, once, so the edges cannot drift apart.
"""

from __future__ import annotations

from services.server.context import ServerContext
from services.server.usecases.accounts import AccountCases
from services.server.usecases.analytics import AnalyticsCases
from services.server.usecases.idempotent import Replayable
from services.server.usecases.jobs import JobCases
from services.server.usecases.logs import JobRef, LogCases
from services.server.usecases.notifications import NotificationCases
from services.server.usecases.schedules import ScheduleCases
from services.server.usecases.volumes import VolumeCases
from services.server.usecases.webhooks import WebhookCases
from services.server.usecases.workflows import WorkflowCases

__all__ = ["Application", "JobRef", "Replayable"]


class Application:
    """The use cases, by concept, over one server context."""

    def __init__(self, context: ServerContext) -> None:
        self.context = context
        self.accounts = AccountCases(context)
        self.workflows = WorkflowCases(context)
        self.jobs = JobCases(context)
        self.logs = LogCases(context)
        self.schedules = ScheduleCases(context)
        self.volumes = VolumeCases(context)
        self.notifications = NotificationCases(context)
        self.analytics = AnalyticsCases(context)
        self.webhooks = WebhookCases(context)
