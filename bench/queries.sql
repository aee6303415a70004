-- Queries the bench runs directly against its own databases: seeding, end states, measurements.

-- name: create_user
INSERT INTO users (email, password_hash) VALUES (%(email)s, 'bench: no login') RETURNING id

-- name: reset
-- Between repeats: no workflow, job, log line or event of the previous one remains.
TRUNCATE workflows, jobs, job_logs, job_volumes, skipped_runs, outbox

-- name: insert_due_heartbeats
-- Liveness HEARTBEATs whose build is done and whose first slot is now. The interval is the
-- longest allowed, so no workflow comes due a second time during a repeat.
INSERT INTO workflows (user_id, name, kind, payload, interval_minutes, build_status, next_run_at)
SELECT %(user_id)s, 'bench-' || g, 'HEARTBEAT', '{}'::jsonb, 10080, 'COMPLETED', now()
FROM generate_series(1, %(count)s) AS g

-- name: insert_due_mixed
-- The same, half of them on cron schedules in several time zones (a fixed time, a step, a macro):
-- the scheduler computes their next slot with the DST policy rather than by adding minutes.
INSERT INTO workflows (user_id, name, kind, payload, interval_minutes, cron, timezone,
                       build_status, next_run_at)
SELECT %(user_id)s, 'bench-' || g, 'HEARTBEAT', '{}'::jsonb,
       CASE WHEN g %% 2 = 0 THEN 10080 END,
       CASE WHEN g %% 2 = 1 THEN (ARRAY['0 3 * * *', '*/15 * * * 1-5', '0 0 1 1 *'])[1 + g %% 3] END,
       (ARRAY['UTC', 'Europe/Riga', 'America/New_York', 'Asia/Kolkata'])[1 + g %% 4],
       'COMPLETED', now()
FROM generate_series(1, %(count)s) AS g

-- name: all_published
-- True once no workflow is due and no job waits to be published: every job is committed, its
-- message acknowledged by the broker, and its QUEUED state committed. Index lookups only, so
-- polling it costs the system under test little.
SELECT NOT EXISTS (
           SELECT 1 FROM workflows
           WHERE build_status = 'COMPLETED' AND terminated_at IS NULL AND next_run_at <= now()
       )
   AND NOT EXISTS (SELECT 1 FROM jobs WHERE status = 'PENDING') AS done

-- name: all_finished
-- True once no workflow is due and no job is PENDING, QUEUED or RUNNING.
SELECT NOT EXISTS (
           SELECT 1 FROM workflows
           WHERE build_status = 'COMPLETED' AND terminated_at IS NULL AND next_run_at <= now()
       )
   AND NOT EXISTS (
           SELECT 1 FROM jobs WHERE status IN ('PENDING', 'QUEUED', 'RUNNING')
       ) AS done

-- name: job_counts
SELECT status, count(*) AS n, count(published_at) AS published FROM jobs GROUP BY status

-- name: dispatch_lag_percentiles
-- Seconds from a job's scheduled slot to its start, at the given percentiles (0..1).
SELECT percentile_cont(%(fractions)s::float8[]) WITHIN GROUP (
           ORDER BY extract(epoch FROM started_at - scheduled_at)
       ) AS lags
FROM jobs
WHERE status = 'COMPLETED'

-- name: job_states
SELECT id, status, error FROM jobs WHERE id = ANY(%(ids)b::uuid[])

-- name: first_job
SELECT id FROM jobs WHERE workflow_id = %(workflow_id)s ORDER BY created_at LIMIT 1

-- name: count_log_lines
SELECT count(*) AS n FROM job_logs WHERE job_id = %(job_id)s

-- name: create_celery_runs
-- The Celery baseline's completion records, one row per task, in the bench's database.
CREATE TABLE IF NOT EXISTS bench_celery_runs (
    job_id       bigint PRIMARY KEY,
    finished_at  timestamptz NOT NULL DEFAULT clock_timestamp()
)

-- name: record_celery_run
-- Idempotent, like Chronoverse's conditional writes: a redelivered task records nothing twice.
INSERT INTO bench_celery_runs (job_id) VALUES (%(job_id)s) ON CONFLICT (job_id) DO NOTHING

-- name: count_celery_runs
SELECT count(*) AS n FROM bench_celery_runs

-- name: reset_celery_runs
TRUNCATE bench_celery_runs
