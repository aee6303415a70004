-- Queries of the server. Every workflow query is scoped by user_id: another user's row is absent.

-- name: insert_workflow
-- An interval workflow's first slot is now (its first job runs at once); a cron one's is given.
INSERT INTO workflows (user_id, name, kind, payload, interval_minutes, cron, timezone, dst_gap,
                       dst_overlap, catchup, catchup_window_minutes,
                       max_consecutive_job_failures_allowed, next_run_at, retain_logs)
VALUES (%(user_id)s, %(name)s, %(kind)s, %(payload)s, %(interval_minutes)s, %(cron)s,
        %(timezone)s, %(dst_gap)s, %(dst_overlap)s, %(catchup)s, %(catchup_window_minutes)s,
        %(max_failures)s, coalesce(%(next_run_at)s::timestamptz, now()), %(retain_logs)s)
RETURNING *

-- name: get_workflow
SELECT * FROM workflows WHERE id = %(id)s AND user_id = %(user_id)s

-- name: lock_workflow
SELECT * FROM workflows WHERE id = %(id)s AND user_id = %(user_id)s FOR UPDATE

-- name: list_workflows
SELECT * FROM workflows
WHERE user_id = %(user_id)s
  AND (%(after_created_at)s::timestamptz IS NULL
       OR (created_at, id) < (%(after_created_at)s::timestamptz, %(after_id)s::uuid))
  AND (%(kind)s::text IS NULL OR kind = %(kind)s::text)
  AND (%(build_status)s::text IS NULL OR build_status = %(build_status)s::text)
  AND (%(terminated)s::boolean IS NULL OR (terminated_at IS NOT NULL) = %(terminated)s::boolean)
  AND (%(name_pattern)s::text IS NULL OR name ILIKE %(name_pattern)s::text)
  AND (%(state)s::text IS NULL OR %(state)s::text = CASE
         WHEN terminated_at IS NOT NULL THEN 'terminated'
         WHEN paused_at IS NOT NULL THEN 'paused'
         ELSE 'active' END)
  -- Failing: live, and its last finished job failed or failures are counting toward the limit.
  AND (%(failing)s::boolean IS NULL OR %(failing)s::boolean = (
         terminated_at IS NULL AND (consecutive_job_failures_count > 0 OR health = 'FAILING')))
ORDER BY created_at DESC, id DESC
LIMIT %(limit)s

-- name: workflow_counters
-- The counters of the dashboard's list; "failing" is the list filter's definition above.
SELECT count(*) FILTER (WHERE terminated_at IS NULL AND paused_at IS NULL) AS active,
       count(*) FILTER (WHERE terminated_at IS NULL AND paused_at IS NOT NULL) AS paused,
       count(*) FILTER (WHERE terminated_at IS NOT NULL) AS terminated,
       count(*) FILTER (WHERE terminated_at IS NULL
                          AND (consecutive_job_failures_count > 0 OR health = 'FAILING')) AS failing
FROM workflows
WHERE user_id = %(user_id)s

-- name: update_workflow
UPDATE workflows
SET name = %(name)s,
    payload = %(payload)s,
    interval_minutes = %(interval_minutes)s,
    cron = %(cron)s,
    timezone = %(timezone)s,
    dst_gap = %(dst_gap)s,
    dst_overlap = %(dst_overlap)s,
    catchup = %(catchup)s,
    catchup_window_minutes = %(catchup_window_minutes)s,
    -- A new cron schedule starts at its next slot; otherwise the series goes on.
    next_run_at = coalesce(%(next_run_at)s::timestamptz, next_run_at),
    max_consecutive_job_failures_allowed = %(max_failures)s,
    retain_logs = %(retain_logs)s,
    generation = %(generation)s,
    build_status = %(build_status)s,
    build_error = CASE WHEN %(build_status)s = 'QUEUED' THEN NULL ELSE build_error END,
    updated_at = now()
WHERE id = %(id)s AND user_id = %(user_id)s AND terminated_at IS NULL
RETURNING *

-- name: delete_workflow
DELETE FROM workflows WHERE id = %(id)s AND user_id = %(user_id)s

-- name: delete_expired_idempotency_key
DELETE FROM idempotency_keys
WHERE user_id = %(user_id)s AND key = %(key)s AND expires_at <= now()

-- name: claim_idempotency_key
INSERT INTO idempotency_keys (user_id, key, fingerprint, status_code, response_body, expires_at)
VALUES (%(user_id)s, %(key)s, %(fingerprint)s, 0, 'null'::jsonb,
        now() + make_interval(secs => %(ttl_s)s))
ON CONFLICT (user_id, key) DO NOTHING
RETURNING key

-- name: get_idempotency_key
SELECT fingerprint, status_code, response_body FROM idempotency_keys
WHERE user_id = %(user_id)s AND key = %(key)s

-- name: store_idempotent_response
UPDATE idempotency_keys SET status_code = %(status_code)s, response_body = %(response_body)s
WHERE user_id = %(user_id)s AND key = %(key)s

-- name: insert_manual_job
INSERT INTO jobs (workflow_id, user_id, trigger, scheduled_at, status, idempotency_key)
VALUES (%(workflow_id)s, %(user_id)s, 'MANUAL', now(), 'PENDING', %(idempotency_key)s)
RETURNING *

-- name: get_job
SELECT * FROM jobs WHERE id = %(job_id)s AND workflow_id = %(workflow_id)s AND user_id = %(user_id)s

-- name: list_jobs
SELECT * FROM jobs
WHERE workflow_id = %(workflow_id)s
  AND user_id = %(user_id)s
  AND (%(after_created_at)s::timestamptz IS NULL
       OR (created_at, id) < (%(after_created_at)s::timestamptz, %(after_id)s::uuid))
  AND (%(status)s::text IS NULL OR status = %(status)s::text)
  AND (%(trigger)s::text IS NULL OR trigger = %(trigger)s::text)
ORDER BY created_at DESC, id DESC
LIMIT %(limit)s

-- name: get_job_by_id
SELECT * FROM jobs WHERE id = %(job_id)s AND user_id = %(user_id)s

-- name: job_events
-- A job's newest events (migrations/0012_job_events.sql writes them), oldest first.
SELECT type, at, data FROM (
    SELECT id, type, at, data FROM job_events
    WHERE job_id = %(job_id)s
    ORDER BY id DESC
    LIMIT %(limit)s
) AS newest
ORDER BY id

-- name: log_page
-- One attempt's lines (each attempt numbers its lines from 0).
SELECT seq, stream, ts, line FROM job_logs
WHERE job_id = %(job_id)s
  AND attempt = %(attempt)s
  AND seq > %(after)s
  AND (%(stream)s::text IS NULL OR stream = %(stream)s::text)
ORDER BY seq
LIMIT %(limit)s

-- name: log_search
-- One attempt's lines that contain a text, case-insensitively: `pattern` is the text with its
-- LIKE wildcards escaped, between two wildcards (store/workflows.py like_pattern). No index but
-- the primary key: the scan of the attempt's lines stops once a page is full (0014_log_search.sql
-- and docs/benchmarks.md say why).
SELECT seq, stream, ts, line FROM job_logs
WHERE job_id = %(job_id)s
  AND attempt = %(attempt)s
  AND seq > %(after)s
  AND (%(stream)s::text IS NULL OR stream = %(stream)s::text)
  AND line ILIKE %(pattern)s::text
ORDER BY seq
LIMIT %(limit)s

-- name: log_state
-- What a log reader decides on (services/server/logs.py LogState): the job's attempt and status,
-- whose end marker is stored, and the newest attempt with a stored line.
SELECT j.status, j.attempt, j.logs_attempt, j.logs_last_seq, j.logs_closed_at,
       j.logs_incomplete, j.logs_purged_attempt, w.kind,
       now() - j.finished_at AS finished_for,
       now() - j.started_at AS started_for,
       (SELECT max(l.attempt) FROM job_logs AS l WHERE l.job_id = j.id) AS logs_max_attempt
FROM jobs AS j JOIN workflows AS w ON w.id = j.workflow_id
WHERE j.id = %(job_id)s

-- name: list_volumes
-- A user's named volumes, with the workflows whose payload mounts each one.
SELECT v.name, v.created_at, v.last_used_at, v.size_bytes, v.size_measured_at,
       coalesce(
           array_agg(w.id ORDER BY w.created_at) FILTER (WHERE w.id IS NOT NULL), '{}'
       ) AS workflow_ids
FROM volumes AS v
LEFT JOIN workflows AS w
  ON w.user_id = v.user_id
 AND w.terminated_at IS NULL
 AND w.payload -> 'volumes' @> jsonb_build_array(jsonb_build_object('name', v.name))
WHERE v.user_id = %(user_id)s
GROUP BY v.user_id, v.name
ORDER BY v.name

-- name: lock_volume
SELECT name FROM volumes WHERE user_id = %(user_id)s AND name = %(name)s FOR UPDATE

-- name: volume_in_use
-- A running job of the user that mounted the volume, if any.
SELECT j.id
FROM job_volumes AS v
JOIN jobs AS j ON j.id = v.job_id
WHERE v.user_id = %(user_id)s AND v.name = %(name)s AND j.status = 'RUNNING'
LIMIT 1

-- name: delete_volume
DELETE FROM volumes WHERE user_id = %(user_id)s AND name = %(name)s

-- name: lock_user_volumes
-- Serialises the per-user volume count of concurrent creates and updates of one user.
SELECT pg_advisory_xact_lock(hashtextextended('chronoverse.volumes:' || %(user_id)s::text, 0))

-- name: volume_names_in_use
-- The volume names a user has: existing volumes and those their live workflows mount, except
-- the workflow being changed (its new payload is counted by the caller).
SELECT name FROM volumes WHERE user_id = %(user_id)s
UNION
SELECT v ->> 'name'
FROM workflows AS w, jsonb_array_elements(coalesce(w.payload -> 'volumes', '[]')) AS v
WHERE w.user_id = %(user_id)s
  AND w.terminated_at IS NULL
  AND w.id IS DISTINCT FROM %(except_workflow_id)s::uuid

-- name: pause_workflow
UPDATE workflows SET paused_at = now(), updated_at = now()
WHERE id = %(id)s AND user_id = %(user_id)s AND terminated_at IS NULL AND paused_at IS NULL
RETURNING *

-- name: unpause_workflow
UPDATE workflows SET paused_at = NULL, updated_at = now()
WHERE id = %(id)s AND user_id = %(user_id)s
RETURNING *

-- name: has_active_job
SELECT EXISTS (SELECT 1 FROM jobs
               WHERE workflow_id = %(workflow_id)s AND status IN ('PENDING', 'QUEUED', 'RUNNING'))
    AS active

-- name: list_fires
-- The fire ledger, newest first: each automatic job (FIRED) and each skip entry (OVERLAP, MISSED,
-- PAUSED), written by the same transactions, so the two cannot disagree. `sort_key` (32 hex digits:
-- a job's id, or ffff and a skip entry's id) breaks ties within one instant; it is the cursor's
-- second half.
SELECT * FROM (
    SELECT j.scheduled_at, j.scheduled_at AS first_scheduled_at, 'FIRED' AS outcome,
           j.id AS job_id, 1 AS slots, '' AS detail, replace(j.id::text, '-', '') AS sort_key
    FROM jobs AS j
    WHERE j.workflow_id = %(workflow_id)s AND j.trigger = 'AUTOMATIC'
    UNION ALL
    SELECT s.last_scheduled_at, s.first_scheduled_at, s.reason, NULL, s.slots, s.detail,
           'ffff' || lpad(to_hex(s.id), 28, '0')
    FROM skipped_runs AS s
    WHERE s.workflow_id = %(workflow_id)s
) AS f
WHERE %(after_at)s::timestamptz IS NULL
   OR (f.scheduled_at, f.sort_key) < (%(after_at)s::timestamptz, %(after_key)s::text)
ORDER BY f.scheduled_at DESC, f.sort_key DESC
LIMIT %(limit)s

-- name: lock_user_webhooks
-- Serialises one user's webhook creations, so the per-user bound holds under concurrency.
SELECT pg_advisory_xact_lock(hashtextextended('webhooks:' || %(user_id)s::text, 0))

-- name: count_webhooks
SELECT count(*) AS n FROM webhooks WHERE user_id = %(user_id)s

-- Per-user quotas (store/quotas.py).

-- name: lock_user_quota
-- Serialises one user's checks of one quota (the kind: 'workflows' or 'active_jobs'), so that two
-- concurrent creates cannot both pass the count.
SELECT pg_advisory_xact_lock(
    hashtextextended('chronoverse.quota.' || %(kind)s || ':' || %(user_id)s::text, 0))

-- name: count_user_workflows
SELECT count(*) AS n FROM workflows WHERE user_id = %(user_id)s

-- name: count_user_active_jobs
-- An index-only count over jobs_user_active_idx (migrations/0015_quotas_retention.sql).
SELECT count(*) AS n FROM jobs
WHERE user_id = %(user_id)s AND status IN ('PENDING', 'QUEUED', 'RUNNING')

-- name: owned_workflow
SELECT id FROM workflows WHERE id = %(id)s AND user_id = %(user_id)s

-- name: insert_webhook
INSERT INTO webhooks (user_id, workflow_id, url, events, secret)
VALUES (%(user_id)s, %(workflow_id)s, %(url)s, %(events)s, %(secret)s)
RETURNING id, workflow_id, url, events, created_at

-- name: list_webhooks
SELECT id, workflow_id, url, events, created_at FROM webhooks
WHERE user_id = %(user_id)s
  AND (%(after_created_at)s::timestamptz IS NULL
       OR (created_at, id) < (%(after_created_at)s::timestamptz, %(after_id)s::uuid))
ORDER BY created_at DESC, id DESC
LIMIT %(limit)s

-- name: owned_webhook
SELECT id FROM webhooks WHERE id = %(id)s AND user_id = %(user_id)s

-- name: delete_webhook
DELETE FROM webhooks WHERE id = %(id)s AND user_id = %(user_id)s RETURNING id

-- name: list_webhook_deliveries
SELECT id, event, status, attempts, next_attempt_at, created_at, finished_at, payload
FROM webhook_deliveries
WHERE webhook_id = %(webhook_id)s
  AND (%(after_created_at)s::timestamptz IS NULL
       OR (created_at, id) < (%(after_created_at)s::timestamptz, %(after_id)s::uuid))
ORDER BY created_at DESC, id DESC
LIMIT %(limit)s

-- name: webhook_attempts_of
SELECT delivery_id, attempt, attempted_at, status_code, duration_ms, error
FROM webhook_attempts
WHERE delivery_id = ANY(%(delivery_ids)s::uuid[])
ORDER BY delivery_id, id

-- name: user_job_analytics
-- A user's jobs created at or after `since` (store/analytics.py): by status, and over the
-- finished ones (COMPLETED, FAILED, CANCELED) that started, the p50 and p95 and the sum of their
-- durations in seconds. One index-only range scan of jobs_user_analytics_idx (0013_analytics.sql).
-- Lines not yet counted in log_lines (a running container job, an end marker that never came)
-- are counted in job_logs: the few rows of jobs_logs_uncounted_idx.
SELECT count(*) FILTER (WHERE status = 'PENDING') AS pending,
       count(*) FILTER (WHERE status = 'QUEUED') AS queued,
       count(*) FILTER (WHERE status = 'RUNNING') AS running,
       count(*) FILTER (WHERE status = 'COMPLETED') AS completed,
       count(*) FILTER (WHERE status = 'FAILED') AS failed,
       count(*) FILTER (WHERE status = 'CANCELED') AS canceled,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - started_at)::float8)
           FILTER (WHERE status IN ('COMPLETED', 'FAILED', 'CANCELED') AND started_at IS NOT NULL)
           AS p50_s,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - started_at)::float8)
           FILTER (WHERE status IN ('COMPLETED', 'FAILED', 'CANCELED') AND started_at IS NOT NULL)
           AS p95_s,
       coalesce(sum(extract(epoch FROM finished_at - started_at)::float8)
           FILTER (WHERE status IN ('COMPLETED', 'FAILED', 'CANCELED') AND started_at IS NOT NULL),
           0) AS execution_s,
       (coalesce(sum(log_lines), 0)
       + (SELECT coalesce(sum((SELECT count(*) FROM job_logs AS l WHERE l.job_id = u.id)
                              - u.log_lines), 0)
          FROM jobs AS u
          WHERE u.user_id = %(user_id)s AND u.created_at >= %(since)s
            AND u.container_id IS NOT NULL
            AND (u.logs_closed_at IS NULL OR coalesce(u.logs_attempt, 1) < u.attempt))
       )::bigint AS log_lines
FROM jobs
WHERE user_id = %(user_id)s AND created_at >= %(since)s

-- name: workflow_job_analytics
-- The same over one workflow's jobs (the caller has checked that the user owns it): a range of
-- jobs_workflow_page_idx, since a workflow's jobs in a window are bounded by its schedule.
SELECT count(*) FILTER (WHERE status = 'PENDING') AS pending,
       count(*) FILTER (WHERE status = 'QUEUED') AS queued,
       count(*) FILTER (WHERE status = 'RUNNING') AS running,
       count(*) FILTER (WHERE status = 'COMPLETED') AS completed,
       count(*) FILTER (WHERE status = 'FAILED') AS failed,
       count(*) FILTER (WHERE status = 'CANCELED') AS canceled,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - started_at)::float8)
           FILTER (WHERE status IN ('COMPLETED', 'FAILED', 'CANCELED') AND started_at IS NOT NULL)
           AS p50_s,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - started_at)::float8)
           FILTER (WHERE status IN ('COMPLETED', 'FAILED', 'CANCELED') AND started_at IS NOT NULL)
           AS p95_s,
       coalesce(sum(extract(epoch FROM finished_at - started_at)::float8)
           FILTER (WHERE status IN ('COMPLETED', 'FAILED', 'CANCELED') AND started_at IS NOT NULL),
           0) AS execution_s,
       (coalesce(sum(log_lines), 0)
       + (SELECT coalesce(sum((SELECT count(*) FROM job_logs AS l WHERE l.job_id = u.id)
                              - u.log_lines), 0)
          FROM jobs AS u
          WHERE u.user_id = %(user_id)s AND u.created_at >= %(since)s
            AND u.container_id IS NOT NULL
            AND (u.logs_closed_at IS NULL OR coalesce(u.logs_attempt, 1) < u.attempt)
            AND u.workflow_id = %(workflow_id)s)
       )::bigint AS log_lines
FROM jobs
WHERE workflow_id = %(workflow_id)s AND user_id = %(user_id)s AND created_at >= %(since)s

-- name: workflow_analytics
-- A user's workflows by state (now, not over the window) and by build status.
SELECT count(*) FILTER (WHERE terminated_at IS NULL AND paused_at IS NULL) AS active,
       count(*) FILTER (WHERE terminated_at IS NULL AND paused_at IS NOT NULL) AS paused,
       count(*) FILTER (WHERE terminated_at IS NOT NULL) AS terminated,
       count(*) FILTER (WHERE build_status = 'QUEUED') AS build_queued,
       count(*) FILTER (WHERE build_status = 'STARTED') AS build_started,
       count(*) FILTER (WHERE build_status = 'COMPLETED') AS build_completed,
       count(*) FILTER (WHERE build_status = 'FAILED') AS build_failed
FROM workflows
WHERE user_id = %(user_id)s

-- Notifications (store/notifications.py): a user's, newest first, as their preference shows them.

-- name: list_notifications
-- Every notification (the ALL preference). One query per (preference, unread) pair, each with its
-- predicate spelled out, so that each plan, generic or not, uses its index.
SELECT id, kind, event, title, message, entity_type, entity_id, action_url, read_at, created_at
FROM notifications
WHERE user_id = %(user_id)s
  AND (%(after_created_at)s::timestamptz IS NULL
       OR (created_at, id) < (%(after_created_at)s::timestamptz, %(after_id)s::uuid))
ORDER BY created_at DESC, id DESC
LIMIT %(limit)s

-- name: list_unread_notifications
-- notifications_unread_idx.
SELECT id, kind, event, title, message, entity_type, entity_id, action_url, read_at, created_at
FROM notifications
WHERE user_id = %(user_id)s
  AND read_at IS NULL
  AND (%(after_created_at)s::timestamptz IS NULL
       OR (created_at, id) < (%(after_created_at)s::timestamptz, %(after_id)s::uuid))
ORDER BY created_at DESC, id DESC
LIMIT %(limit)s

-- name: list_alert_notifications
-- What the ALERTS preference shows (chronoverse.alerts.ALERTS_KINDS, ALERTS_EVENTS), exactly the
-- predicate of notifications_alerts_idx (migrations/0016): the hidden SUCCESS and INFO rows,
-- however many, are never read.
SELECT id, kind, event, title, message, entity_type, entity_id, action_url, read_at, created_at
FROM notifications
WHERE user_id = %(user_id)s
  AND (kind IN ('ALERT', 'ERROR', 'WARN') OR event = 'workflow.recovered')
  AND (%(after_created_at)s::timestamptz IS NULL
       OR (created_at, id) < (%(after_created_at)s::timestamptz, %(after_id)s::uuid))
ORDER BY created_at DESC, id DESC
LIMIT %(limit)s

-- name: list_unread_alert_notifications
-- notifications_alerts_unread_idx: the unread badge of the ALERTS preference.
SELECT id, kind, event, title, message, entity_type, entity_id, action_url, read_at, created_at
FROM notifications
WHERE user_id = %(user_id)s
  AND read_at IS NULL
  AND (kind IN ('ALERT', 'ERROR', 'WARN') OR event = 'workflow.recovered')
  AND (%(after_created_at)s::timestamptz IS NULL
       OR (created_at, id) < (%(after_created_at)s::timestamptz, %(after_id)s::uuid))
ORDER BY created_at DESC, id DESC
LIMIT %(limit)s

-- name: mark_notifications_read
-- Of the user's unread notifications (the ALL preference): these ids, or all of them. Another
-- user's ids match nothing.
UPDATE notifications SET read_at = now()
WHERE user_id = %(user_id)s
  AND read_at IS NULL
  AND (%(all)s::boolean OR id = ANY(%(ids)s::uuid[]))

-- name: mark_alert_notifications_read
-- mark_notifications_read for what the ALERTS preference shows (notifications_alerts_unread_idx).
UPDATE notifications SET read_at = now()
WHERE user_id = %(user_id)s
  AND read_at IS NULL
  AND (kind IN ('ALERT', 'ERROR', 'WARN') OR event = 'workflow.recovered')
  AND (%(all)s::boolean OR id = ANY(%(ids)s::uuid[]))

-- name: get_profile
SELECT id, email, created_at, notification_preference FROM users WHERE id = %(user_id)s

-- name: set_notification_preference
UPDATE users SET notification_preference = %(preference)s WHERE id = %(user_id)s
RETURNING id, email, created_at, notification_preference

-- name: analytics_settings
-- For the rest of the transaction: the percentiles sort up to a million durations in memory
-- rather than on disk, and no JIT, whose compile time (about 0.3 s) exceeds the query's own: the
-- planner overestimates the per-job line counts of the few uncounted jobs. docs/benchmarks.md.
SELECT set_config('work_mem', '64MB', true), set_config('jit', 'off', true)
