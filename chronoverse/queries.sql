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
-- Also returns the slot it was waiting for (`pending_run_at`): a paused workflow's slots since then
-- go to the fire ledger as PAUSED.
UPDATE workflows AS w
SET terminated_at = now(), terminated_reason = %(reason)s, updated_at = now(), next_run_at = NULL
FROM (SELECT id, next_run_at FROM workflows WHERE id = %(id)s FOR UPDATE) AS before
WHERE w.id = before.id
  AND (%(user_id)s::uuid IS NULL OR w.user_id = %(user_id)s::uuid)
  AND w.terminated_at IS NULL
RETURNING w.*, before.next_run_at AS pending_run_at

-- name: cancel_pending_jobs
UPDATE jobs SET status = 'CANCELED', finished_at = now(), error = %(reason)s
WHERE workflow_id = %(workflow_id)s AND status IN ('PENDING', 'QUEUED')

-- name: insert_outbox
INSERT INTO outbox (topic, key, payload) VALUES (%(topic)s, %(key)s, %(payload)s)

-- name: notify_scheduler
SELECT pg_notify('chronoverse_scheduler', '')

-- name: listen_scheduler
LISTEN chronoverse_scheduler

-- name: workflows_with_unsealed_secrets
-- Secret values at rest (chronoverse.secret_store): the secret field of each kind is
-- chronoverse.secrets.SECRET_FIELDS, CONTAINER env and HEARTBEAT headers.
SELECT id, kind, payload FROM workflows
WHERE id > %(after)s
  AND ((kind = 'CONTAINER'
        AND jsonb_path_exists(payload, '$.env.* ? (!(@ starts with $prefix))', %(vars)s))
    OR (kind = 'HEARTBEAT'
        AND jsonb_path_exists(payload, '$.headers.* ? (!(@ starts with $prefix))', %(vars)s)))
ORDER BY id
LIMIT %(limit)s
FOR UPDATE

-- name: workflows_with_secrets
SELECT id, kind, payload FROM workflows
WHERE id > %(after)s
  AND ((kind = 'CONTAINER' AND jsonb_path_exists(payload, '$.env.*'))
    OR (kind = 'HEARTBEAT' AND jsonb_path_exists(payload, '$.headers.*')))
ORDER BY id
LIMIT %(limit)s
FOR UPDATE

-- name: webhooks_with_secrets
-- Webhook signing secrets, sealed like workflow secrets: rotated with them.
SELECT id, secret FROM webhooks
WHERE id > %(after)s
ORDER BY id
LIMIT %(limit)s
FOR UPDATE

-- name: set_webhook_secret
UPDATE webhooks SET secret = %(secret)s WHERE id = %(id)s

-- name: set_workflow_payload
-- The same definition, other ciphertexts: neither the generation nor updated_at change.
UPDATE workflows SET payload = %(payload)s WHERE id = %(id)s

-- name: idempotent_responses_with_secrets
SELECT user_id, key, response_body FROM idempotency_keys
WHERE (response_body ->> 'kind' = 'CONTAINER'
       AND jsonb_path_exists(response_body, '$.payload.env.* ? (@ != $mask)', %(vars)s))
   OR (response_body ->> 'kind' = 'HEARTBEAT'
       AND jsonb_path_exists(response_body, '$.payload.headers.* ? (@ != $mask)', %(vars)s))
FOR UPDATE

-- name: set_idempotent_response_body
UPDATE idempotency_keys SET response_body = %(response_body)s
WHERE user_id = %(user_id)s AND key = %(key)s

-- Accounts (chronoverse/accounts.py): users and their API tokens.

-- name: insert_user
INSERT INTO users (email, password_hash) VALUES (%(email)s, %(password_hash)s)
RETURNING id, email, created_at

-- name: lock_first_user
-- Registration while it is open only to the first user: this transaction-scoped lock makes two
-- concurrent first registrations take turns. It is its own statement so that the insert after
-- it takes its snapshot once the lock is held, and sees a user the other one committed.
SELECT pg_advisory_xact_lock(hashtext('chronoverse.first_user'))

-- name: insert_first_user
INSERT INTO users (email, password_hash)
SELECT %(email)s, %(password_hash)s
WHERE NOT EXISTS (SELECT 1 FROM users)
RETURNING id, email, created_at

-- name: user_by_email
SELECT id, email, password_hash, created_at FROM users WHERE lower(email) = lower(%(email)s)

-- name: insert_token
INSERT INTO api_tokens (user_id, token_hash, name, expires_at)
VALUES (%(user_id)s, %(token_hash)s, %(name)s, %(expires_at)s)
RETURNING id

-- name: authenticate_token
UPDATE api_tokens SET last_used_at = now()
WHERE token_hash = %(token_hash)s
  AND revoked_at IS NULL
  AND (expires_at IS NULL OR expires_at > now())
RETURNING id, user_id

-- name: revoke_token
UPDATE api_tokens SET revoked_at = now()
WHERE id = %(token_id)s AND user_id = %(user_id)s AND revoked_at IS NULL
RETURNING id

-- name: list_tokens
-- The user's tokens still in force (not revoked, not expired), newest first.
SELECT id, name, created_at, last_used_at, expires_at FROM api_tokens
WHERE user_id = %(user_id)s
  AND revoked_at IS NULL
  AND (expires_at IS NULL OR expires_at > now())
ORDER BY created_at DESC, id

-- Fires (chronoverse/lifecycle.py record_fires): the scheduler's decisions, and a resume's.

-- name: insert_automatic_jobs
-- Each job once: QUEUED and counted as published when `queued` (the scheduler sends its message
-- right after this transaction commits; a crash in between leaves it to the requeue sweeper),
-- else PENDING for the dispatcher. The ids come from the caller, which needs them for the
-- messages. A slot that already has its job keeps it (one job per nominal slot).
INSERT INTO jobs (id, workflow_id, user_id, trigger, scheduled_at, status, queued_at,
                  published_at, publish_count)
SELECT t.id, t.workflow_id, t.user_id, 'AUTOMATIC', t.scheduled_at,
       CASE WHEN t.queued THEN 'QUEUED' ELSE 'PENDING' END,
       CASE WHEN t.queued THEN now() END,
       CASE WHEN t.queued THEN now() END,
       CASE WHEN t.queued THEN 1 ELSE 0 END
FROM unnest(%(ids)b::uuid[], %(workflow_ids)b::uuid[], %(user_ids)b::uuid[],
            %(slots)b::timestamptz[], %(queued)b::boolean[])
    AS t(id, workflow_id, user_id, scheduled_at, queued)
ON CONFLICT (workflow_id, scheduled_at) WHERE trigger = 'AUTOMATIC' DO NOTHING

-- name: existing_jobs
-- Which of these job ids were written (after an insert that met an existing slot).
SELECT id FROM jobs WHERE id = ANY(%(ids)b::uuid[])

-- name: advance_workflows
UPDATE workflows AS w SET next_run_at = t.next_run_at
FROM unnest(%(ids)b::uuid[], %(next_run_ats)b::timestamptz[]) AS t(id, next_run_at)
WHERE w.id = t.id

-- name: insert_skips
INSERT INTO skipped_runs (workflow_id, reason, first_scheduled_at, last_scheduled_at, slots, detail)
SELECT * FROM unnest(%(workflow_ids)b::uuid[], %(reasons)b::text[], %(firsts)b::timestamptz[],
                     %(lasts)b::timestamptz[], %(slots)b::integer[], %(details)b::text[])
