"""The bench's direct access to Postgres: seeding rows and reading end states."""

from __future__ import annotations

import uuid
from pathlib import Path

import psycopg
from psycopg.rows import dict_row

from chronoverse import lifecycle
from chronoverse.postgres import Conn
from chronoverse.sql import Queries

QUERIES = Queries.load(Path(__file__).with_name("queries.sql"))


def connect(database_url: str) -> Conn:
    """An autocommit connection with dict rows: each statement is its own transaction."""
    return psycopg.connect(database_url, autocommit=True, row_factory=dict_row)


def create_user(conn: Conn) -> uuid.UUID:
    row = conn.execute(
        QUERIES.create_user, {"email": f"bench-{uuid.uuid4().hex[:10]}@example.com"}
    ).fetchone()
    assert row is not None
    return uuid.UUID(str(row["id"]))


def reset(conn: Conn, *, attempts: int = 5) -> None:
    """Empty the tables a repeat fills. The services keep querying them meanwhile, and TRUNCATE
    locks its tables one after the other: when Postgres breaks a deadlock by cancelling it, the
    reset is simply run again."""
    for attempt in range(1, attempts + 1):
        try:
            conn.execute(QUERIES.reset)
            return
        except psycopg.errors.DeadlockDetected:
            if attempt == attempts:
                raise


def seed_due_heartbeats(conn: Conn, user_id: uuid.UUID, count: int, *, mixed: bool = False) -> None:
    """Insert ``count`` due liveness workflows and wake the scheduler, in one transaction;
    ``mixed``: half of them on cron schedules."""
    query = QUERIES.insert_due_mixed if mixed else QUERIES.insert_due_heartbeats
    with conn.transaction():
        conn.execute(query, {"user_id": user_id, "count": count})
        lifecycle.wake_scheduler(conn)  # what a completed build does


def flag(conn: Conn, query: str) -> bool:
    row = conn.execute(query).fetchone()
    return bool(row and row["done"])


def job_counts(conn: Conn) -> dict[str, int]:
    return {row["status"]: int(row["n"]) for row in conn.execute(QUERIES.job_counts)}


def published_count(conn: Conn) -> int:
    return sum(int(row["published"]) for row in conn.execute(QUERIES.job_counts))
