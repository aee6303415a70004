"""Postgres adapter: connection pools and the shared package's queries."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from chronoverse.settings import PostgresSettings
from chronoverse.sql import Queries

QUERIES = Queries.load(Path(__file__).with_name("queries.sql"))


# The one connection type: rows as dicts. Every module that takes a connection names it so.
Conn = psycopg.Connection[dict[str, Any]]
Pool = ConnectionPool[Conn]


def create_pool(settings: PostgresSettings, *, name: str, open: bool = True) -> Pool:
    """A pool of dict-row connections. With ``open=False``, call ``pool.open()`` before use."""
    return ConnectionPool(
        settings.database_url,
        min_size=settings.database_pool_min_size,
        max_size=settings.database_pool_max_size,
        name=name,
        open=open,
        connection_class=psycopg.Connection[dict[str, Any]],
        kwargs={"row_factory": dict_row, "application_name": f"chronoverse-{name}"},
    )


def ping(database_url: str, *, timeout_s: float = 2.0) -> None:
    """Raise unless the database answers a trivial query within the timeout."""
    with psycopg.connect(database_url, connect_timeout=max(1, int(timeout_s))) as conn:
        conn.execute(QUERIES.ping)
