from pathlib import Path

import pglast
import pytest

from chronoverse.errors import MigrationError
from chronoverse.migrate import AppliedMigration, Migration, default_migrations_dir, discover, plan


def m(version: int, sql: str = "SELECT 1") -> Migration:
    return Migration(version=version, name=f"m{version}", sql=sql)


def applied(migration: Migration) -> AppliedMigration:
    return AppliedMigration(
        version=migration.version, name=migration.name, checksum=migration.checksum
    )


def test_plan_returns_unapplied_migrations_in_order() -> None:
    available = [m(1), m(2), m(3)]
    assert plan(available, {1: applied(available[0])}) == available[1:]


def test_plan_is_empty_when_up_to_date() -> None:
    available = [m(1), m(2)]
    assert plan(available, {x.version: applied(x) for x in available}) == []


def test_an_edited_applied_migration_is_refused() -> None:
    original = m(1, "CREATE TABLE a ()")
    edited = m(1, "CREATE TABLE b ()")
    with pytest.raises(MigrationError, match="edited"):
        plan([edited], {1: applied(original)})


def test_an_applied_migration_missing_on_disk_is_refused() -> None:
    with pytest.raises(MigrationError, match="not on disk"):
        plan([m(1)], {1: applied(m(1)), 2: applied(m(2))})


def test_discover_orders_by_version(tmp_path: Path) -> None:
    (tmp_path / "0002_second.sql").write_text("SELECT 2")
    (tmp_path / "0001_first.sql").write_text("SELECT 1")
    assert [x.name for x in discover(tmp_path)] == ["first", "second"]


@pytest.mark.parametrize("filename", ["1_short.sql", "0001-dash.sql", "0001_Upper.sql"])
def test_discover_refuses_badly_named_files(tmp_path: Path, filename: str) -> None:
    (tmp_path / filename).write_text("SELECT 1")
    with pytest.raises(MigrationError, match="NNNN_description"):
        discover(tmp_path)


def test_the_shipped_migrations_parse() -> None:
    migrations = discover(default_migrations_dir())
    assert [x.version for x in migrations] == list(range(1, len(migrations) + 1))
    for migration in migrations:
        pglast.parse_sql(migration.sql)
