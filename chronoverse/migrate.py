"""Schema migrations: plain SQL files in ``migrations/``, applied in order under an advisory lock.

A file is named ``NNNN_description.sql``; ``NNNN`` is its version. Each file runs in its own
transaction together with the row that records it in ``schema_migrations``, so a failed file leaves
nothing behind. A Postgres session-level advisory lock serialises concurrent runs (and, unlike a
lock row, is released by the server if the process dies). A file that was applied and then edited
is refused: its checksum no longer matches.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psycopg

from chronoverse.errors import MigrationError
from chronoverse.postgres import QUERIES

logger = logging.getLogger(__name__)

# Arbitrary constant shared by every Chronoverse process: the key of the migration advisory lock.
MIGRATION_LOCK_KEY = 0x43_48_52_4F_4E_4F  # "CHRONO"
_FILENAME = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")


@dataclass(frozen=True, kw_only=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


@dataclass(frozen=True, kw_only=True)
class AppliedMigration:
    version: int
    name: str
    checksum: str


def default_migrations_dir() -> Path:
    """The packaged copy when installed from a wheel, else the repository's ``migrations/``."""
    packaged = Path(__file__).with_name("_migrations")
    return packaged if packaged.is_dir() else Path(__file__).parent.parent / "migrations"


def discover(directory: Path) -> list[Migration]:
    """Read every migration file in ``directory``, ordered by version."""
    if not directory.is_dir():
        raise MigrationError(f"migrations directory {directory} does not exist")
    migrations: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _FILENAME.match(path.name)
        if match is None:
            raise MigrationError(f"{path.name}: migration files are named NNNN_description.sql")
        version = int(match["version"])
        if version in migrations:
            raise MigrationError(f"{path.name}: version {version} appears twice", version=version)
        migrations[version] = Migration(
            version=version, name=match["name"], sql=path.read_text(encoding="utf-8")
        )
    return [migrations[v] for v in sorted(migrations)]


def plan(
    available: Sequence[Migration], applied: Mapping[int, AppliedMigration]
) -> list[Migration]:
    """Decide which migrations to apply; refuse edited or unknown applied ones."""
    by_version = {m.version: m for m in available}
    for version, done in applied.items():
        known = by_version.get(version)
        if known is None:
            raise MigrationError(
                f"the database has migration {version} ({done.name}) that is not on disk: "
                "is this an older Chronoverse than the database?",
                version=version,
            )
        if known.checksum != done.checksum:
            raise MigrationError(
                f"migration {version} ({known.name}) was edited after it was applied; "
                "add a new migration instead",
                version=version,
            )
    return [m for m in available if m.version not in applied]


def migrate(database_url: str, directory: Path | None = None) -> list[Migration]:
    """Apply pending migrations; return the ones applied by this call (empty when up to date)."""
    available = discover(directory or default_migrations_dir())
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(QUERIES.advisory_lock, {"key": MIGRATION_LOCK_KEY})
        try:
            conn.execute(QUERIES.create_migrations_table)
            rows = conn.execute(QUERIES.applied_migrations).fetchall()
            applied = {
                row[0]: AppliedMigration(version=row[0], name=row[1], checksum=row[2])
                for row in rows
            }
            pending = plan(available, applied)
            for migration in pending:
                _apply(conn, migration)
            return pending
        finally:
            conn.execute(QUERIES.advisory_unlock, {"key": MIGRATION_LOCK_KEY})


def _apply(conn: psycopg.Connection[tuple[object, ...]], migration: Migration) -> None:
    logger.info(
        "applying migration %04d_%s",
        migration.version,
        migration.name,
        extra={"action": "migration_apply", "version": migration.version},
    )
    try:
        with conn.transaction():
            # Migration files are trusted files shipped with the code.
            conn.execute(migration.sql)
            conn.execute(
                QUERIES.record_migration,
                {
                    "version": migration.version,
                    "name": migration.name,
                    "checksum": migration.checksum,
                },
            )
    except psycopg.Error as exc:
        raise MigrationError(
            f"migration {migration.version:04d}_{migration.name} failed: {exc}",
            version=migration.version,
        ) from exc
