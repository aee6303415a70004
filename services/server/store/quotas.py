"""Per-user quotas checked in the transaction that would exceed them: workflows, active jobs.

Each check takes a transaction-scoped advisory lock per user and quota before it counts, so two
concurrent requests of one user cannot both pass; other users, and the user's other quotas, do
not wait. The scheduler creates automatic jobs without this lock (it records a QUOTA skip past
the bound instead, see chronoverse/scheduling.py), so a manual run racing it may overshoot the
active-jobs bound by the jobs of that one scheduler pass.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from uuid import UUID

from chronoverse.errors import QuotaExceededError
from chronoverse.postgres import Conn
from chronoverse.sql import Queries

QUERIES = Queries.load(Path(__file__).with_name("queries.sql"))

Quota = Literal["workflows", "active_jobs"]


def _lock(conn: Conn, user_id: UUID, quota: Quota) -> None:
    conn.execute(QUERIES.lock_user_quota, {"kind": quota, "user_id": user_id})


def _count(conn: Conn, query: str, user_id: UUID) -> int:
    row = conn.execute(query, {"user_id": user_id}).fetchone()
    assert row is not None
    return int(row["n"])


def check_workflows(conn: Conn, user_id: UUID, *, limit: int) -> None:
    """Refuse a new workflow when the user already has ``limit``; call before inserting it."""
    _lock(conn, user_id, "workflows")
    have = _count(conn, QUERIES.count_user_workflows, user_id)
    if have >= limit:
        raise QuotaExceededError(
            "CHRONOVERSE_MAX_WORKFLOWS_PER_USER",
            limit,
            f"you have {have} workflows, the most allowed per user ({limit}); delete one "
            "first (DELETE /workflows/{id})",
        )


def lock_active_jobs(conn: Conn, user_id: UUID) -> None:
    """Serialise the user's manual runs until the transaction ends (then check_active_jobs)."""
    _lock(conn, user_id, "active_jobs")


def check_active_jobs(conn: Conn, user_id: UUID, *, limit: int) -> None:
    """Refuse the job just inserted when the user now has more than ``limit`` jobs PENDING,
    QUEUED or RUNNING (the caller rolls the insert back); lock_active_jobs must come first."""
    have = _count(conn, QUERIES.count_user_active_jobs, user_id) - 1  # without the new job
    if have >= limit:
        raise QuotaExceededError(
            "CHRONOVERSE_MAX_ACTIVE_JOBS_PER_USER",
            limit,
            f"you have {have} jobs pending, queued or running, the most allowed per user "
            f"({limit}); run this again once some have finished",
        )
