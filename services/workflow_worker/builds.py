"""Build events from the `workflows` topic.

A HEARTBEAT needs nothing built: its event takes the build straight to COMPLETED, through the same
path CONTAINER builds take (image checks and cached definitions come with the container issue).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

from prometheus_client import Counter

from chronoverse import lifecycle
from chronoverse.domain import WorkflowKind
from chronoverse.errors import MalformedMessageError
from chronoverse.kafka.consumer import Record
from chronoverse.messages import decode_object
from chronoverse.postgres import Pool
from chronoverse.sql import Queries

logger = logging.getLogger(__name__)
QUERIES = Queries.load(Path(__file__).with_name("queries.sql"))
BUILD_EVENTS = {"workflow.created", "workflow.updated"}
KNOWN_EVENTS = BUILD_EVENTS | {"workflow.terminated", "workflow.deleted"}

BUILDS = Counter("chronoverse_builds", "Build outcomes by kind.", ["kind", "status"])


@dataclass(frozen=True, kw_only=True)
class WorkflowEvent:
    type: str
    workflow_id: UUID
    kind: WorkflowKind
    generation: int


def decode_workflow_event(key: bytes | None, value: bytes | None) -> WorkflowEvent:
    data = decode_object(key, value)
    if data.get("v") != lifecycle.MESSAGE_VERSION or data.get("type") not in KNOWN_EVENTS:
        raise MalformedMessageError(
            f"unsupported event v={data.get('v')!r} type={data.get('type')!r}"
        )
    try:
        return WorkflowEvent(
            type=str(data["type"]),
            workflow_id=UUID(str(data["workflow_id"])),
            kind=WorkflowKind(data["kind"]),
            generation=int(data["generation"]),
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise MalformedMessageError(f"bad workflow event: {exc}") from exc


class Builder:
    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    def handle(self, batch: Sequence[Record[WorkflowEvent]]) -> None:
        for record in batch:
            self.apply(record.value)

    def apply(self, event: WorkflowEvent) -> None:
        if event.type not in BUILD_EVENTS:
            return
        if event.kind is not WorkflowKind.HEARTBEAT:
            logger.debug(
                "CONTAINER builds are not handled yet (workflow %s)",
                event.workflow_id,
                extra={"action": "build_skipped", "workflow_id": str(event.workflow_id)},
            )
            return
        with self._pool.connection() as conn:
            row = conn.execute(
                QUERIES.complete_build,
                {"workflow_id": event.workflow_id, "generation": event.generation},
            ).fetchone()
            if row is not None:
                lifecycle.wake_scheduler(conn)
        if row is not None:
            BUILDS.labels(event.kind.value, "COMPLETED").inc()
            logger.info(
                "workflow %s generation %d built",
                event.workflow_id,
                event.generation,
                extra={"action": "build_completed", "workflow_id": str(event.workflow_id)},
            )
