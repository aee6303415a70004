"""A job's history as the API reads it: the newest ``job_events`` rows of one of a user's jobs."""

from __future__ import annotations

from uuid import UUID

from chronoverse.job_events import MAX_JOB_EVENTS, JobEvent, JobHistory
from chronoverse.postgres import Conn
from services.server.store import jobs


def history(
    conn: Conn, user_id: UUID, workflow_id: UUID, job_id: UUID, *, limit: int = MAX_JOB_EVENTS
) -> JobHistory:
    """The job's newest ``limit`` events, oldest first; NotFoundError unless it is the user's job
    of that workflow."""
    jobs.get(conn, user_id, workflow_id, job_id)
    rows = conn.execute(jobs.QUERIES.job_events, {"job_id": job_id, "limit": limit + 1}).fetchall()
    truncated = len(rows) > limit
    kept = rows[1:] if truncated else rows  # the oldest one fetched only tells that there is more
    return JobHistory(events=[JobEvent.from_row(r) for r in kept], truncated=truncated)
