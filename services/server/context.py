"""What the HTTP and gRPC edges share: settings, the connection pool and the accounts service."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from services.server.auth import Accounts
from services.server.settings import Settings


class ServerContext:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # Opened by open(): building the app (e.g. to render OpenAPI) needs no database.
        self.pool: ConnectionPool[psycopg.Connection[dict[str, Any]]] = ConnectionPool(
            settings.database_url,
            min_size=settings.database_pool_min_size,
            max_size=settings.database_pool_max_size,
            name="server",
            open=False,
            connection_class=psycopg.Connection[dict[str, Any]],
            kwargs={"row_factory": dict_row, "application_name": "chronoverse-server"},
        )
        self.accounts = Accounts(self.pool, token_ttl=timedelta(days=settings.token_ttl_days))

    def open(self) -> None:
        self.pool.open(wait=False)

    def close(self) -> None:
        self.pool.close()

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Connection[dict[str, Any]]]:
        """A pooled connection; commits when the block ends normally, rolls back otherwise."""
        with self.pool.connection() as conn:
            yield conn
