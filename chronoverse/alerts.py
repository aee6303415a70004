"""What a state change tells its owner: in-app notifications, health flips and webhook events.

A finished job, a terminated workflow or a build that moved is a *transition*. :func:`decide`
turns one into a :class:`Decision` (pure: no I/O): the notifications to store, the workflow's new
health, and the webhook events to put in the outbox. :func:`write` stores decisions on the
caller's connection, inside the transaction of the change itself, so both commit together or not
at all. Each notification and delivery has a dedup key (``job.failed:<job id>``): writing the
same event twice is a no-op (``ON CONFLICT DO NOTHING`` on the table's unique key).

**Health.** A workflow is NEW until a job of it finishes, then PASSING (its last finished job
completed) or FAILING (it failed). Only a flip alerts: the first failed job after a success or
after creation raises ``workflow.failing``; the first completed job after failures raises
``workflow.recovered``. NEW to PASSING, and more of the same, raise nothing beyond the job's own
notification. Webhooks fire on the flips, on ``workflow.terminated`` and on ``build.failed``,
never on every run. A terminated workflow flips no more: a job that was running when it was
terminated may still complete, but its health stays as it was, so no ``workflow.recovered`` ever
follows ``workflow.terminated``.

**Liveness beats.** A liveness HEARTBEAT (nothing to run) completes every time it is due; its
success is the expected beat, not news, so it stores no ``job.completed`` (a user with a hundred
one-minute beats would otherwise collect four million hidden rows a month). Its failure, and the
flips and terminations of its workflow, are told as for any job.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from chronoverse.domain import BuildStatus, JobStatus
from chronoverse.postgres import Conn
from chronoverse.sql import Queries

QUERIES = Queries.load(Path(__file__).with_name("alerts.sql"))

# A job's error can be long (a container's last words); a notification shows its start.
MAX_MESSAGE_ERROR = 500


class Kind(enum.StrEnum):
    ALERT = "ALERT"
    ERROR = "ERROR"
    WARN = "WARN"
    SUCCESS = "SUCCESS"
    INFO = "INFO"


class Health(enum.StrEnum):
    NEW = "NEW"  # no job finished yet
    PASSING = "PASSING"  # the last finished job completed
    FAILING = "FAILING"  # the last finished job failed


class Preference(enum.StrEnum):
    """Which notifications a user is shown; every notification is stored regardless."""

    ALERTS = "ALERTS"  # ALERT, ERROR and WARN, and the recovery that ends an ERROR
    ALL = "ALL"
    NONE = "NONE"


class EntityType(enum.StrEnum):
    WORKFLOW = "WORKFLOW"
    JOB = "JOB"


class Event(enum.StrEnum):
    BUILD_STARTED = "build.started"
    BUILD_COMPLETED = "build.completed"
    BUILD_FAILED = "build.failed"
    JOB_COMPLETED = "job.completed"
    JOB_FAILED = "job.failed"
    JOB_CANCELED = "job.canceled"
    WORKFLOW_TERMINATED = "workflow.terminated"
    WORKFLOW_FAILING = "workflow.failing"
    WORKFLOW_RECOVERED = "workflow.recovered"


# The events a webhook may subscribe to: the flips, the end of a workflow, a broken build.
WEBHOOK_EVENTS = frozenset(
    {
        Event.WORKFLOW_FAILING,
        Event.WORKFLOW_RECOVERED,
        Event.WORKFLOW_TERMINATED,
        Event.BUILD_FAILED,
    }
)
# What the ALERTS preference shows besides its kinds: the good news that ends a shown ERROR.
# services/server/store/queries.sql (the list_alert_* queries) and the partial indexes of
# migrations/0016_notification_retention.sql spell the same predicate out; a test checks they agree.
ALERTS_KINDS = (Kind.ALERT, Kind.ERROR, Kind.WARN)
ALERTS_EVENTS = (Event.WORKFLOW_RECOVERED,)


def shown_kinds(preference: Preference) -> tuple[tuple[Kind, ...], tuple[Event, ...]] | None:
    """The kinds, and the events of other kinds, a preference shows; None: everything."""
    if preference is Preference.ALL:
        return None
    if preference is Preference.NONE:
        return (), ()
    return ALERTS_KINDS, ALERTS_EVENTS


# --- transitions --------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class WorkflowState:
    """The workflow as a transition sees it, read under its row lock."""

    id: UUID
    user_id: UUID
    name: str
    health: Health
    consecutive_failures: int

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> WorkflowState:
        """From a row with ``id, user_id, name, health, consecutive_job_failures_count``."""
        return cls(
            id=row["id"],
            user_id=row["user_id"],
            name=row["name"],
            health=Health(row["health"]),
            consecutive_failures=row["consecutive_job_failures_count"],
        )


@dataclass(frozen=True, kw_only=True)
class JobFinished:
    """A job reached COMPLETED, FAILED or CANCELED (a retry is not an outcome)."""

    workflow: WorkflowState
    job_id: UUID
    status: JobStatus
    error: str | None = None
    exit_code: int | None = None
    # The consecutive failed jobs this job ended (COMPLETED) or now counts among (FAILED).
    consecutive_failures: int = 0
    # Its workflow was terminated before the outcome was written (the job was already running).
    workflow_terminated: bool = False
    # A liveness HEARTBEAT (chronoverse.payloads.is_liveness): its success is no news.
    liveness: bool = False


@dataclass(frozen=True, kw_only=True)
class Terminated:
    """A workflow was terminated: by its owner, or by itself after too many failed jobs."""

    workflow: WorkflowState
    reason: str
    by_user: bool


@dataclass(frozen=True, kw_only=True)
class BuildMoved:
    """The build of a workflow's generation STARTED, COMPLETED or FAILED."""

    workflow: WorkflowState
    generation: int
    status: BuildStatus
    error: str | None = None


Transition = JobFinished | Terminated | BuildMoved


# --- decisions ----------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Notification:
    user_id: UUID
    kind: Kind
    event: Event
    title: str
    message: str
    entity_type: EntityType
    entity_id: UUID
    action_url: str
    dedup_key: str


@dataclass(frozen=True, kw_only=True)
class WebhookEvent:
    """One event for the outbox: a delivery per endpoint of the owner that subscribes to it."""

    user_id: UUID
    workflow_id: UUID
    event: Event
    dedup_key: str
    payload: dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class Decision:
    workflow_id: UUID
    notifications: tuple[Notification, ...] = ()
    webhooks: tuple[WebhookEvent, ...] = ()
    health: Health | None = None  # the new health; None: unchanged


def workflow_path(workflow_id: UUID) -> str:
    return f"/ui/workflows/{workflow_id}"


def job_path(workflow_id: UUID, job_id: UUID) -> str:
    return f"/ui/workflows/{workflow_id}/jobs/{job_id}"


def decide(transition: Transition, *, public_url: str, now: datetime) -> Decision:
    """What ``transition`` raises. ``public_url`` makes webhook links absolute; ``now`` is the
    webhook payload's timestamp."""
    if isinstance(transition, JobFinished):
        return _job_finished(transition, public_url=public_url, now=now)
    if isinstance(transition, Terminated):
        return _terminated(transition, public_url=public_url, now=now)
    return _build_moved(transition, public_url=public_url, now=now)


def decide_all(
    transitions: Iterable[Transition], *, public_url: str, now: datetime
) -> list[Decision]:
    """:func:`decide` for several transitions in order, each seeing the health the previous ones
    of its workflow left (a batch may finish several jobs of one workflow)."""
    health: dict[UUID, Health] = {}
    decisions = []
    for transition in transitions:
        workflow = transition.workflow
        if workflow.id in health:
            transition = replace(transition, workflow=replace(workflow, health=health[workflow.id]))
        decision = decide(transition, public_url=public_url, now=now)
        if decision.health is not None:
            health[workflow.id] = decision.health
        decisions.append(decision)
    return decisions


def _job_finished(t: JobFinished, *, public_url: str, now: datetime) -> Decision:
    w = t.workflow
    path = job_path(w.id, t.job_id)

    def note(
        kind: Kind, event: Event, title: str, message: str, entity: EntityType
    ) -> Notification:
        return Notification(
            user_id=w.user_id,
            kind=kind,
            event=event,
            title=title,
            message=message,
            entity_type=entity,
            entity_id=t.job_id if entity is EntityType.JOB else w.id,
            action_url=path,
            dedup_key=f"{event.value}:{t.job_id}",
        )

    def hook(event: Event) -> WebhookEvent:
        return _webhook(
            w,
            event,
            dedup_key=f"{event.value}:{t.job_id}",
            job_id=t.job_id,
            status=t.status.value,
            error=t.error,
            consecutive_failures=t.consecutive_failures,
            url=public_url.rstrip("/") + path,
            now=now,
        )

    if t.status is JobStatus.CANCELED:
        reason = f": {_cut(t.error)}" if t.error else ""
        message = f"A job of workflow {w.name!r} was canceled{reason}."
        return Decision(
            workflow_id=w.id,
            notifications=(
                note(Kind.WARN, Event.JOB_CANCELED, "Job canceled", message, EntityType.JOB),
            ),
        )
    if t.status is JobStatus.COMPLETED:
        notes: list[Notification] = []
        if not t.liveness:
            notes.append(
                note(
                    Kind.SUCCESS,
                    Event.JOB_COMPLETED,
                    "Job completed",
                    f"A job of workflow {w.name!r} completed.",
                    EntityType.JOB,
                )
            )
        if w.health is Health.PASSING or t.workflow_terminated:
            return Decision(workflow_id=w.id, notifications=tuple(notes))
        if w.health is Health.NEW:
            return Decision(workflow_id=w.id, notifications=tuple(notes), health=Health.PASSING)
        notes.append(
            note(
                Kind.SUCCESS,
                Event.WORKFLOW_RECOVERED,
                "Workflow recovered",
                f"Workflow {w.name!r} recovered: a job completed after "
                f"{_failed_jobs(t.consecutive_failures)}.",
                EntityType.WORKFLOW,
            )
        )
        return Decision(
            workflow_id=w.id,
            notifications=tuple(notes),
            webhooks=(hook(Event.WORKFLOW_RECOVERED),),
            health=Health.PASSING,
        )
    if t.status is not JobStatus.FAILED:
        raise ValueError(f"{t.status} is not the final status of a job")
    exit_code = f" with exit code {t.exit_code}" if t.exit_code is not None else ""
    error = f": {_cut(t.error)}" if t.error else ""
    notes = [
        note(
            Kind.ERROR,
            Event.JOB_FAILED,
            "Job failed",
            f"A job of workflow {w.name!r} failed{exit_code}{error}.",
            EntityType.JOB,
        )
    ]
    if w.health is Health.FAILING or t.workflow_terminated:
        return Decision(workflow_id=w.id, notifications=tuple(notes))
    after = "its last success" if w.health is Health.PASSING else "its creation"
    notes.append(
        note(
            Kind.ERROR,
            Event.WORKFLOW_FAILING,
            "Workflow failing",
            f"Workflow {w.name!r} is failing: its first failed job since {after}{error}.",
            EntityType.WORKFLOW,
        )
    )
    return Decision(
        workflow_id=w.id,
        notifications=tuple(notes),
        webhooks=(hook(Event.WORKFLOW_FAILING),),
        health=Health.FAILING,
    )


def _terminated(t: Terminated, *, public_url: str, now: datetime) -> Decision:
    w = t.workflow
    path = workflow_path(w.id)
    dedup_key = f"{Event.WORKFLOW_TERMINATED.value}:{w.id}"  # terminated once, for good
    if t.by_user:
        kind, title = Kind.INFO, "Workflow terminated"
        message = f"Workflow {w.name!r} was terminated: {_cut(t.reason)}."
    else:
        kind, title = Kind.ALERT, "Workflow auto-terminated"
        message = (
            f"Workflow {w.name!r} terminated itself after {_failed_jobs(w.consecutive_failures)} "
            f"in a row; it runs no more jobs. Reason: {_cut(t.reason)}"
        )
    return Decision(
        workflow_id=w.id,
        notifications=(
            Notification(
                user_id=w.user_id,
                kind=kind,
                event=Event.WORKFLOW_TERMINATED,
                title=title,
                message=message,
                entity_type=EntityType.WORKFLOW,
                entity_id=w.id,
                action_url=path,
                dedup_key=dedup_key,
            ),
        ),
        webhooks=(
            _webhook(
                w,
                Event.WORKFLOW_TERMINATED,
                dedup_key=dedup_key,
                job_id=None,
                status="TERMINATED",
                error=t.reason,
                consecutive_failures=w.consecutive_failures,
                url=public_url.rstrip("/") + path,
                now=now,
            ),
        ),
    )


_BUILD = {
    BuildStatus.STARTED: (Kind.INFO, Event.BUILD_STARTED, "Build started", "started"),
    BuildStatus.COMPLETED: (Kind.SUCCESS, Event.BUILD_COMPLETED, "Build completed", "completed"),
    BuildStatus.FAILED: (Kind.ERROR, Event.BUILD_FAILED, "Build failed", "failed"),
}


def _build_moved(t: BuildMoved, *, public_url: str, now: datetime) -> Decision:
    if t.status not in _BUILD:
        raise ValueError(f"a build does not move to {t.status}")
    kind, event, title, verb = _BUILD[t.status]
    w = t.workflow
    path = workflow_path(w.id)
    # A new generation builds again: each generation's build is its own event.
    dedup_key = f"{event.value}:{w.id}:{t.generation}"
    error = f": {_cut(t.error)}" if t.error else ""
    notification = Notification(
        user_id=w.user_id,
        kind=kind,
        event=event,
        title=title,
        message=f"The build of workflow {w.name!r} {verb}{error}.",
        entity_type=EntityType.WORKFLOW,
        entity_id=w.id,
        action_url=path,
        dedup_key=dedup_key,
    )
    webhooks: tuple[WebhookEvent, ...] = ()
    if event is Event.BUILD_FAILED:
        webhooks = (
            _webhook(
                w,
                event,
                dedup_key=dedup_key,
                job_id=None,
                status=t.status.value,
                error=t.error,
                consecutive_failures=w.consecutive_failures,
                url=public_url.rstrip("/") + path,
                now=now,
            ),
        )
    return Decision(workflow_id=w.id, notifications=(notification,), webhooks=webhooks)


def _webhook(
    w: WorkflowState,
    event: Event,
    *,
    dedup_key: str,
    job_id: UUID | None,
    status: str,
    error: str | None,
    consecutive_failures: int,
    url: str,
    now: datetime,
) -> WebhookEvent:
    return WebhookEvent(
        user_id=w.user_id,
        workflow_id=w.id,
        event=event,
        dedup_key=dedup_key,
        payload={
            "type": event.value,
            "timestamp": now.isoformat(),
            "data": {
                "workflow_id": str(w.id),
                "workflow_name": w.name,
                "job_id": str(job_id) if job_id is not None else None,
                "status": status,
                "error": error,
                "consecutive_failures": consecutive_failures,
                "url": url,
            },
        },
    )


def _failed_jobs(count: int) -> str:
    return "1 failed job" if count == 1 else f"{count} failed jobs"


def _cut(text: str, limit: int = MAX_MESSAGE_ERROR) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else f"{text[:limit]}…"


# --- writes -------------------------------------------------------------------------------------


def write(conn: Conn, decisions: Sequence[Decision]) -> None:
    """Store decisions in the caller's transaction: at most three statements, however many.

    The caller holds the workflows' row locks (the health was read under them). A notification or
    delivery already written for the same event is left as it is.
    """
    notes = [n for d in decisions for n in d.notifications]
    if notes:
        conn.execute(
            QUERIES.insert_notifications,
            {
                "user_ids": [n.user_id for n in notes],
                "kinds": [n.kind.value for n in notes],
                "events": [n.event.value for n in notes],
                "titles": [n.title for n in notes],
                "messages": [n.message for n in notes],
                "entity_types": [n.entity_type.value for n in notes],
                "entity_ids": [n.entity_id for n in notes],
                "action_urls": [n.action_url for n in notes],
                "dedup_keys": [n.dedup_key for n in notes],
            },
        )
    # The last decision of a workflow holds its health after all of them.
    health = {d.workflow_id: d.health for d in decisions if d.health is not None}
    if health:
        conn.execute(
            QUERIES.set_health,
            {"ids": list(health), "healths": [h.value for h in health.values()]},
        )
    enqueue_webhooks(conn, [e for d in decisions for e in d.webhooks])


def enqueue_webhooks(conn: Conn, events: Sequence[WebhookEvent]) -> None:
    """Put events in the webhook outbox: one PENDING delivery per endpoint of the workflow's
    owner that subscribes to the event (for every workflow, or for this one)."""
    if not events:
        return
    conn.execute(
        QUERIES.enqueue_webhook_deliveries,
        {
            "user_ids": [e.user_id for e in events],
            "workflow_ids": [e.workflow_id for e in events],
            "events": [e.event.value for e in events],
            "payloads": [json.dumps(e.payload) for e in events],
            "dedup_keys": [e.dedup_key for e in events],
        },
    )
