-- Queries of the shared package. Each block starts with a "-- name: <name>" header.

-- name: create_migrations_table
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     integer PRIMARY KEY,
    name        text NOT NULL,
    checksum    text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)

-- name: applied_migrations
SELECT version, name, checksum FROM schema_migrations ORDER BY version

-- name: record_migration
INSERT INTO schema_migrations (version, name, checksum) VALUES (%(version)s, %(name)s, %(checksum)s)

-- name: advisory_lock
SELECT pg_advisory_lock(%(key)s)

-- name: advisory_unlock
SELECT pg_advisory_unlock(%(key)s)

-- name: ping
SELECT 1

-- name: terminate_workflow
UPDATE workflows
SET terminated_at = now(), terminated_reason = %(reason)s, updated_at = now(), next_run_at = NULL
WHERE id = %(id)s
  AND (%(user_id)s::uuid IS NULL OR user_id = %(user_id)s::uuid)
  AND terminated_at IS NULL
RETURNING *

-- name: cancel_pending_jobs
UPDATE jobs SET status = 'CANCELED', finished_at = now(), error = %(reason)s
WHERE workflow_id = %(workflow_id)s AND status IN ('PENDING', 'QUEUED')

-- name: insert_outbox
INSERT INTO outbox (topic, key, payload) VALUES (%(topic)s, %(key)s, %(payload)s)

-- name: notify_scheduler
SELECT pg_notify('chronoverse_scheduler', '')
