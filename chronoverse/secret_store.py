"""Secret values stored in Postgres: the encryption migration and key rotation.

``chronoverse migrate`` runs :func:`seal_stored` after the SQL migrations. It seals every plain
CONTAINER ``env`` and HEARTBEAT ``headers`` value (stored before values were encrypted) and masks
those values in saved idempotency responses. Sealed values are skipped, so running it again
changes nothing; with nothing to seal it needs no key. ``chronoverse secrets rotate`` runs
:func:`rotate_stored`, which also seals webhook signing secrets again. Rows are locked and
rewritten in batches, each in its own transaction, so a running server can keep serving; a
rewrite changes ciphertexts only, never the generation.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, LiteralString
from uuid import UUID

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from chronoverse.domain import WorkflowKind
from chronoverse.errors import ConfigurationError
from chronoverse.postgres import QUERIES, Conn
from chronoverse.secrets import (
    MASK,
    SEALED_PREFIX,
    SecretBox,
    mask_payload,
    rotate_payload,
    seal_unsealed,
)

logger = logging.getLogger(__name__)

BATCH_SIZE = 500
KEY_REQUIRED = (
    "is required: workflows store env or headers values that are not encrypted yet; make a "
    "key with `chronoverse secrets generate-key`, set CHRONOVERSE_SECRET_KEYS to it (the same "
    "value for every service) and run `chronoverse migrate` again"
)

Transform = Callable[[WorkflowKind, Mapping[str, Any]], dict[str, Any]]


@dataclass(frozen=True, kw_only=True)
class SealReport:
    workflows: int  # workflows whose plain values were sealed
    responses: int  # saved idempotency responses whose values were masked


def seal_stored(
    database_url: str, box: SecretBox | None, *, batch_size: int = BATCH_SIZE
) -> SealReport:
    """Seal plain secret values and mask saved responses; ``box`` is needed only to seal."""

    def seal(kind: WorkflowKind, payload: Mapping[str, Any]) -> dict[str, Any]:
        if box is None:
            raise ConfigurationError("CHRONOVERSE_SECRET_KEYS", KEY_REQUIRED)
        return seal_unsealed(box, kind, payload)

    with _connect(database_url) as conn:
        responses = _mask_responses(conn)
        workflows = _rewrite(
            conn,
            QUERIES.workflows_with_unsealed_secrets,
            {"vars": Jsonb({"prefix": SEALED_PREFIX})},
            seal,
            batch_size=batch_size,
        )
    if workflows or responses:
        logger.info(
            "sealed the secret values of %d workflows, masked %d saved responses",
            workflows,
            responses,
            extra={"action": "secrets_sealed", "workflows": workflows, "responses": responses},
        )
    return SealReport(workflows=workflows, responses=responses)


def rotate_stored(database_url: str, box: SecretBox, *, batch_size: int = BATCH_SIZE) -> int:
    """Seal every stored secret value again with the first key; return the workflows rewritten.

    Every value must open with one of the box's keys: keep the old key until this has run.
    """
    with _connect(database_url) as conn:
        count = _rewrite(
            conn,
            QUERIES.workflows_with_secrets,
            {},
            lambda kind, payload: rotate_payload(box, kind, payload),
            batch_size=batch_size,
        )
        webhooks = _rotate_webhook_secrets(conn, box, batch_size=batch_size)
    logger.info(
        "sealed the secret values of %d workflows and %d webhook signing secrets with the "
        "first key",
        count,
        webhooks,
        extra={"action": "secrets_rotated", "workflows": count, "webhooks": webhooks},
    )
    return count


def _rotate_webhook_secrets(conn: Conn, box: SecretBox, *, batch_size: int) -> int:
    """Seal every webhook signing secret again with the first key, batch by batch."""
    after = UUID(int=0)
    changed = 0
    while True:
        with conn.transaction():
            rows = conn.execute(
                QUERIES.webhooks_with_secrets, {"after": after, "limit": batch_size}
            ).fetchall()
            for row in rows:
                sealed = box.rotate(row["secret"])
                conn.execute(QUERIES.set_webhook_secret, {"id": row["id"], "secret": sealed})
                changed += 1
        if len(rows) < batch_size:
            return changed
        after = rows[-1]["id"]


def _connect(database_url: str) -> Conn:
    return psycopg.connect(database_url, autocommit=True, row_factory=dict_row)


def _rewrite(
    conn: Conn,
    query: LiteralString,
    params: Mapping[str, Any],
    transform: Transform,
    *,
    batch_size: int,
) -> int:
    """Apply ``transform`` to the payload of each workflow ``query`` selects, batch by batch."""
    after = UUID(int=0)
    changed = 0
    while True:
        with conn.transaction():
            rows = conn.execute(query, {**params, "after": after, "limit": batch_size}).fetchall()
            for row in rows:
                payload = transform(WorkflowKind(row["kind"]), row["payload"])
                if payload != row["payload"]:
                    conn.execute(
                        QUERIES.set_workflow_payload, {"id": row["id"], "payload": Jsonb(payload)}
                    )
                    changed += 1
        if len(rows) < batch_size:
            return changed
        after = rows[-1]["id"]


def _mask_responses(conn: Conn) -> int:
    """Mask secret values in saved idempotency responses (stored before responses were masked)."""
    with conn.transaction():
        rows = conn.execute(
            QUERIES.idempotent_responses_with_secrets, {"vars": Jsonb({"mask": MASK})}
        ).fetchall()
        for row in rows:
            body = row["response_body"]
            masked = {**body, "payload": mask_payload(WorkflowKind(body["kind"]), body["payload"])}
            conn.execute(
                QUERIES.set_idempotent_response_body,
                {"user_id": row["user_id"], "key": row["key"], "response_body": Jsonb(masked)},
            )
    return len(rows)
