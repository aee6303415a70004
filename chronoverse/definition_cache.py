"""The Redis cache of built CONTAINER definitions, sealed, expiring, and deleted with the workflow.

The workflow worker puts a definition when a build completes; the execution worker gets it for
every CONTAINER job and puts it back when it had to rebuild it from Postgres. An entry that does
not verify (another key, edited, planted, or sealed for another workflow or generation) is never
used: :meth:`DefinitionCache.get` raises, and the caller rebuilds from Postgres.
"""

from __future__ import annotations

import logging
from typing import cast
from uuid import UUID

import redis
from prometheus_client import Counter

from chronoverse.definitions import (
    ContainerDefinition,
    UnverifiedDefinitionError,
    cache_key,
    cache_prefix,
)
from chronoverse.secrets import SecretBox

logger = logging.getLogger(__name__)

DEFINITIONS_REJECTED = Counter(
    "chronoverse_definitions_rejected",
    "Cached definitions refused because they did not verify (tampered, planted, other key).",
)


class DefinitionCache:
    def __init__(self, client: redis.Redis, box: SecretBox, *, ttl_s: int) -> None:
        self._redis = client
        self._box = box
        self._ttl_s = ttl_s

    def put(self, definition: ContainerDefinition) -> None:
        self._redis.set(
            cache_key(definition.workflow_id, definition.generation),
            definition.seal(self._box),
            ex=self._ttl_s,
        )

    def get(self, workflow_id: UUID | str, generation: int) -> ContainerDefinition | None:
        """The cached definition; None when absent. Raises UnverifiedDefinitionError for an
        entry this installation did not seal for this workflow and generation (and drops it)."""
        key = cache_key(workflow_id, generation)
        sealed = self._redis.get(key)
        if sealed is None:
            return None
        try:
            return ContainerDefinition.unseal(
                self._box, cast(bytes, sealed), workflow_id=workflow_id, generation=generation
            )
        except UnverifiedDefinitionError as exc:
            DEFINITIONS_REJECTED.inc()
            logger.error(
                "refused the cached definition of workflow %s generation %d: %s",
                workflow_id,
                generation,
                exc,
                extra={"action": "definition_rejected", "workflow_id": str(workflow_id)},
            )
            self._redis.delete(key)
            raise

    def purge_cleartext(self) -> int:
        """Delete every cached definition written before definitions were sealed (plain JSON,
        env values in clear, no expiry); return how many. Run once when a workflow worker
        starts. Entries sealed with another key are left alone: another installation sharing
        this Redis may own them, and this one refuses them anyway."""
        purged = 0
        for key in self._redis.scan_iter(match="chronoverse:definition:*", count=500):
            value = self._redis.get(key)
            if value is not None and cast(bytes, value).lstrip().startswith(b"{"):
                self._redis.delete(key)
                purged += 1
        if purged:
            logger.warning(
                "deleted %d cached definition(s) stored in clear by an older version",
                purged,
                extra={"action": "definitions_purged"},
            )
        return purged

    def forget(self, workflow_id: UUID | str, *, below_generation: int | None = None) -> int:
        """Delete the workflow's cached generations (only the older ones with
        ``below_generation``); return how many were deleted."""
        prefix = cache_prefix(workflow_id)
        stale = []
        for raw in self._redis.scan_iter(match=f"{prefix}*", count=100):
            key = raw.decode() if isinstance(raw, bytes) else str(raw)
            suffix = key.removeprefix(prefix)
            if not suffix.isdigit():
                continue
            if below_generation is None or int(suffix) < below_generation:
                stale.append(key)
        if stale:
            self._redis.delete(*stale)
        return len(stale)
