import threading
from collections.abc import Callable

import psycopg
import pytest

from chronoverse.errors import MigrationError
from chronoverse.migrate import default_migrations_dir, discover, migrate

pytestmark = pytest.mark.integration

EXPECTED_COLUMNS = {
    "users": {"id", "email", "password_hash", "created_at", "notification_preference"},
    "notifications": {
        "id",
        "user_id",
        "kind",
        "event",
        "title",
        "message",
        "entity_type",
        "entity_id",
        "action_url",
        "dedup_key",
        "read_at",
        "created_at",
    },
    "webhooks": {"id", "user_id", "workflow_id", "url", "events", "secret", "created_at"},
    "webhook_deliveries": {
        "id",
        "webhook_id",
        "event",
        "payload",
        "dedup_key",
        "status",
        "attempts",
        "next_attempt_at",
        "locked_until",
        "created_at",
        "finished_at",
    },
    "webhook_attempts": {
        "id",
        "delivery_id",
        "attempt",
        "attempted_at",
        "status_code",
        "duration_ms",
        "error",
    },
    "job_events": {"id", "job_id", "type", "at", "data"},
    "job_volumes": {"job_id", "user_id", "name"},
    "volumes": {
        "user_id",
        "name",
        "id",
        "created_at",
        "last_used_at",
        "size_bytes",
        "size_measured_at",
    },
    "api_tokens": {
        "id",
        "user_id",
        "token_hash",
        "name",
        "created_at",
        "last_used_at",
        "expires_at",
        "revoked_at",
    },
    "workflows": {
        "id",
        "user_id",
        "name",
        "retain_logs",
        "health",
        "kind",
        "payload",
        "interval_minutes",
        "cron",
        "timezone",
        "dst_gap",
        "dst_overlap",
        "catchup",
        "catchup_window_minutes",
        "paused_at",
        "max_consecutive_job_failures_allowed",
        "consecutive_job_failures_count",
        "build_status",
        "build_error",
        "generation",
        "next_run_at",
        "created_at",
        "updated_at",
        "terminated_at",
        "terminated_reason",
    },
    "jobs": {
        "id",
        "workflow_id",
        "user_id",
        "trigger",
        "scheduled_at",
        "idempotency_key",
        "status",
        "attempt",
        "created_at",
        "queued_at",
        "started_at",
        "finished_at",
        "lease_owner",
        "lease_token",
        "lease_expires_at",
        "container_id",
        "exit_code",
        "failure_kind",
        "error",
        "run_after",
        "published_at",
        "publish_count",
        "logs_last_seq",
        "logs_closed_at",
        "logs_attempt",
        "handed_back",
        "logs_incomplete",
        "logs_purge_after",
        "logs_purge_attempt",
        "logs_purged_attempt",
        "log_lines",  # 0013_analytics.sql
    },
    "skipped_runs": {
        "id",
        "workflow_id",
        "reason",
        "first_scheduled_at",
        "last_scheduled_at",
        "slots",
        "detail",
        "created_at",
    },
    "job_logs": {"job_id", "attempt", "seq", "stream", "ts", "line"},
    "outbox": {"id", "topic", "key", "payload", "created_at", "published_at"},
    "schema_migrations": {"version", "name", "checksum", "applied_at"},
    "idempotency_keys": {
        "user_id",
        "key",
        "fingerprint",
        "status_code",
        "response_body",
        "created_at",
        "expires_at",
    },
}


def columns(url: str) -> dict[str, set[str]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = 'public'"
        ).fetchall()
    result: dict[str, set[str]] = {}
    for table, column in rows:
        result.setdefault(table, set()).add(column)
    return result


def test_migrated_schema_has_the_designed_tables(database_url: str) -> None:
    assert columns(database_url) == EXPECTED_COLUMNS


def test_one_automatic_job_per_workflow_and_slot(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        user = conn.execute(
            "INSERT INTO users (email, password_hash) VALUES ('a@example.com', 'x') RETURNING id"
        ).fetchone()[0]  # type: ignore[index]
        workflow = conn.execute(
            "INSERT INTO workflows (user_id, name, kind, interval_minutes) "
            "VALUES (%s, 'w', 'HEARTBEAT', 1) RETURNING id",
            (user,),
        ).fetchone()[0]  # type: ignore[index]
        insert = (
            "INSERT INTO jobs (workflow_id, user_id, trigger, scheduled_at) "
            "VALUES (%s, %s, %s, '2026-01-01T00:00:00Z')"
        )
        conn.execute(insert, (workflow, user, "AUTOMATIC"))
        conn.execute(insert, (workflow, user, "MANUAL"))  # manual runs may share a slot
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(insert, (workflow, user, "AUTOMATIC"))


@pytest.mark.parametrize(
    ("statement", "error"),
    [
        ("UPDATE workflows SET interval_minutes = 0", psycopg.errors.CheckViolation),
        ("UPDATE workflows SET interval_minutes = 10081", psycopg.errors.CheckViolation),
        ("UPDATE workflows SET kind = 'CRON'", psycopg.errors.CheckViolation),
        ("UPDATE workflows SET terminated_at = now()", psycopg.errors.CheckViolation),
    ],
)
def test_constraints_guard_workflow_rows(database_url: str, statement: str, error: type) -> None:
    with psycopg.connect(database_url) as conn:
        user = conn.execute(
            "INSERT INTO users (email, password_hash) VALUES ('b@example.com', 'x') RETURNING id"
        ).fetchone()[0]  # type: ignore[index]
        conn.execute(
            "INSERT INTO workflows (user_id, name, kind, interval_minutes) "
            "VALUES (%s, 'w', 'HEARTBEAT', 5)",
            (user,),
        )
        with pytest.raises(error):
            conn.execute(statement)  # type: ignore[arg-type]


def test_running_twice_is_a_no_op(database_url: str) -> None:
    before = columns(database_url)
    assert migrate(database_url) == []
    assert columns(database_url) == before


def test_concurrent_runs_apply_each_migration_once(
    empty_database_factory: Callable[..., str],
) -> None:
    url = empty_database_factory()
    barrier = threading.Barrier(4)
    results: list[int] = []
    errors: list[BaseException] = []

    def run() -> None:
        barrier.wait()
        try:
            results.append(len(migrate(url)))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    total = len(discover(default_migrations_dir()))
    assert sorted(results) == [0, 0, 0, total]
    with psycopg.connect(url) as conn:
        count = conn.execute("SELECT count(*) FROM schema_migrations").fetchone()[0]  # type: ignore[index]
    assert count == total


def test_a_failing_migration_leaves_nothing_behind(
    empty_database_factory: Callable[..., str], tmp_path
) -> None:  # type: ignore[no-untyped-def]
    url = empty_database_factory()
    (tmp_path / "0001_ok.sql").write_text("CREATE TABLE kept (id int);")
    (tmp_path / "0002_broken.sql").write_text("CREATE TABLE half (id int); SELECT * FROM nowhere;")
    with pytest.raises(MigrationError, match="0002_broken"):
        migrate(url, tmp_path)
    tables = columns(url)
    assert "kept" in tables
    assert "half" not in tables
    with psycopg.connect(url) as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_migrations")]
    assert versions == [1]
