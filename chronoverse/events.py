"""Workflow events: the `workflows` topic message, its types, and its encoding.

The server and the execution worker write them to the outbox (see :mod:`chronoverse.lifecycle`);
the scheduling worker relays them to Kafka; the workflow worker builds or stops on them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from chronoverse.domain import Workflow, WorkflowKind
from chronoverse.errors import MalformedMessageError
from chronoverse.messages import decode_object, encode

WORKFLOW_EVENT_VERSION = 1


class WorkflowEventType(enum.StrEnum):
    CREATED = "workflow.created"
    UPDATED = "workflow.updated"
    TERMINATED = "workflow.terminated"
    DELETED = "workflow.deleted"

    @property
    def needs_build(self) -> bool:
        """A created or updated workflow is built for its new generation; the others stop it."""
        return self in {WorkflowEventType.CREATED, WorkflowEventType.UPDATED}


@dataclass(frozen=True, kw_only=True)
class WorkflowEvent:
    """``{"v": 1, "type", "workflow_id", "user_id", "kind", "generation"}``.

    Keyed by the workflow id, so that one workflow's events stay in order.
    """

    type: WorkflowEventType
    workflow_id: UUID
    user_id: UUID
    kind: WorkflowKind
    generation: int

    @classmethod
    def of(cls, event_type: WorkflowEventType, workflow: Workflow) -> WorkflowEvent:
        return cls(
            type=event_type,
            workflow_id=workflow.id,
            user_id=workflow.user_id,
            kind=workflow.kind,
            generation=workflow.generation,
        )

    def to_json(self) -> dict[str, Any]:
        """The message as the outbox stores it (JSONB); :meth:`encode` is what Kafka carries."""
        return {
            "v": WORKFLOW_EVENT_VERSION,
            "type": self.type.value,
            "workflow_id": str(self.workflow_id),
            "user_id": str(self.user_id),
            "kind": self.kind.value,
            "generation": self.generation,
        }

    def encode(self) -> bytes:
        return encode(self.to_json())

    @classmethod
    def decode(cls, key: bytes | None, value: bytes | None) -> WorkflowEvent:
        """Decode a `workflows` message; anything else raises :class:`MalformedMessageError`."""
        data = decode_object(key, value)
        event_type = data.get("type")
        if data.get("v") != WORKFLOW_EVENT_VERSION or not (
            isinstance(event_type, str) and event_type in _TYPES
        ):
            raise MalformedMessageError(
                f"unsupported event v={data.get('v')!r} type={data.get('type')!r}"
            )
        try:
            return cls(
                type=WorkflowEventType(event_type),
                workflow_id=UUID(str(data["workflow_id"])),
                user_id=UUID(str(data["user_id"])),
                kind=WorkflowKind(data["kind"]),
                generation=int(data["generation"]),
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise MalformedMessageError(f"bad workflow event: {exc}") from exc


_TYPES = frozenset(t.value for t in WorkflowEventType)
