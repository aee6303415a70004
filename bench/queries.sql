-- Queries the bench runs directly against its own databases: seeding, end states, measurements.

-- name: create_user
INSERT INTO users (email, password_hash) VALUES (%(email)s, 'bench: no login') RETURNING id

-- name: reset
-- Between repeats: no workflow, job, log line or event of the previous one remains.
TRUNCATE workflows, jobs, job_logs, job_volumes, skipped_runs, outbox, job_events, webhooks,
    webhook_deliveries, webhook_attempts

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

-- name: insert_steady_heartbeats
-- Liveness HEARTBEATs every minute whose build is done, the first slots spread evenly from
-- `first`, `spacing_us` microseconds apart (the steady scenario).
INSERT INTO workflows (user_id, name, kind, payload, interval_minutes, build_status, next_run_at)
SELECT %(user_id)s, 'steady-' || g, 'HEARTBEAT', '{}'::jsonb, 1, 'COMPLETED',
       %(first)s::timestamptz + (g - 1) * %(spacing_us)s * interval '1 microsecond'
FROM generate_series(1, %(count)s) AS g

-- name: clock
SELECT clock_timestamp() AS now

-- name: wal_position
-- Where the server's write-ahead log is (all databases' writes), in bytes.
SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0') AS bytes

-- name: steady_settled
-- True once every slot up to `until` has its job and each of those jobs has finished.
SELECT NOT EXISTS (
           SELECT 1 FROM workflows
           WHERE build_status = 'COMPLETED' AND terminated_at IS NULL
             AND next_run_at <= %(until)s
       )
   AND NOT EXISTS (
           SELECT 1 FROM jobs
           WHERE scheduled_at <= %(until)s AND status IN ('PENDING', 'QUEUED', 'RUNNING')
       ) AS done

-- name: steady_jobs
-- The automatic jobs of the slots from `since` to `until`: how many, how many COMPLETED, and at
-- the given percentiles (0..1) the seconds from slot to start, and from slot to the scheduler's
-- transaction that created the job.
SELECT count(*) AS jobs,
       count(*) FILTER (WHERE status = 'COMPLETED') AS completed,
       percentile_cont(%(fractions)s::float8[]) WITHIN GROUP (
           ORDER BY extract(epoch FROM started_at - scheduled_at)
       ) AS lags,
       percentile_cont(%(fractions)s::float8[]) WITHIN GROUP (
           ORDER BY extract(epoch FROM created_at - scheduled_at)
       ) AS created_lags
FROM jobs
WHERE trigger = 'AUTOMATIC' AND scheduled_at >= %(since)s AND scheduled_at <= %(until)s

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

-- name: log_scale_job
-- A RUNNING CONTAINER job of a new workflow, for bench/log_search_scale.py.
WITH w AS (
    INSERT INTO workflows (user_id, name, kind, payload, interval_minutes, next_run_at)
    VALUES (%(user_id)s, 'log-scale', 'CONTAINER', '{"image": "busybox"}', 60, now())
    RETURNING id, user_id
)
INSERT INTO jobs (workflow_id, user_id, trigger, scheduled_at, status, attempt, started_at)
SELECT id, user_id, 'MANUAL', now(), 'RUNNING', 1, now() FROM w
RETURNING id

-- name: log_scale_seed
-- Lines first..first+count-1 of attempt 1 of a job: a request log in which one line in 100 has a
-- timeout and one in 10,000 an error; a hash per line keeps the trigrams as varied as real logs.
INSERT INTO job_logs (job_id, attempt, seq, stream, ts, line)
SELECT %(job_id)s, 1, g, CASE WHEN g %% 5 = 0 THEN 'stderr' ELSE 'stdout' END, now(),
       'INFO worker-' || (g %% 17) || ' handled request ' || md5(%(salt)s || g::text)
       || ' in ' || (g %% 977) || ' ms'
       || CASE WHEN g %% 10000 = 7 THEN ' ERROR disk quota exceeded'
               WHEN g %% 100 = 3 THEN ' upstream timeout, retrying'
               ELSE '' END
FROM generate_series(%(first)s::bigint, %(first)s::bigint + %(count)s::bigint - 1) AS g

-- name: log_scale_delete
DELETE FROM job_logs WHERE job_id = %(job_id)s

-- name: log_scale_index_size
SELECT coalesce(pg_relation_size(to_regclass(%(name)s)), 0) AS bytes

-- name: analytics_scale_workflows
-- CONTAINER workflows of a user, built, for bench/analytics_scale.py.
INSERT INTO workflows (user_id, name, kind, payload, interval_minutes, build_status)
SELECT %(user_id)s, 'analytics-' || g, 'CONTAINER', '{"image": "busybox"}', 60, 'COMPLETED'
FROM generate_series(1, %(count)s) AS g
RETURNING id

-- name: analytics_scale_jobs
-- Jobs first+1..first+count of `total` jobs of the given workflows, round robin, created evenly
-- over the last `days` days (job `total` now), as
-- the services leave them: of 100, 85 COMPLETED, 10 FAILED, 3 CANCELED (unstarted), 2 PENDING; each
-- finished one ran 1 to 600 s and its log_lines counted (0 to 199) at its end marker. The
-- newest job of each workflow is RUNNING with its lines not yet counted (see analytics_scale_lines).
INSERT INTO jobs (workflow_id, user_id, trigger, scheduled_at, status, attempt, created_at,
                  started_at, finished_at, container_id, log_lines, logs_attempt, logs_closed_at)
SELECT (%(workflow_ids)s::uuid[])[1 + g %% cardinality(%(workflow_ids)s::uuid[])],
       %(user_id)s,
       'AUTOMATIC', t.created, s.status, 1, t.created,
       CASE WHEN s.status IN ('COMPLETED', 'FAILED', 'RUNNING') THEN t.created + interval '1 s' END,
       CASE WHEN s.status IN ('COMPLETED', 'FAILED')
            THEN t.created + interval '1 s' + (1 + g * 7919 %% 600) * interval '1 s'
            WHEN s.status = 'CANCELED' THEN t.created END,
       CASE WHEN s.status IN ('COMPLETED', 'FAILED', 'RUNNING') THEN 'c' || g END,
       CASE WHEN s.status IN ('COMPLETED', 'FAILED') THEN g * 31 %% 200 ELSE 0 END,
       CASE WHEN s.status IN ('COMPLETED', 'FAILED') THEN 1 END,
       CASE WHEN s.status IN ('COMPLETED', 'FAILED') THEN t.created + interval '10 min' END
FROM generate_series(%(first)s::bigint + 1, %(first)s::bigint + %(count)s) AS g,
     LATERAL (SELECT now() - %(days)s * interval '1 day' * (%(total)s - g) / %(total)s
                     - interval '1 s' AS created) AS t,
     LATERAL (SELECT CASE WHEN g > %(total)s - cardinality(%(workflow_ids)s::uuid[]) THEN 'RUNNING'
                          WHEN g %% 100 < 85 THEN 'COMPLETED'
                          WHEN g %% 100 < 95 THEN 'FAILED'
                          WHEN g %% 100 < 98 THEN 'CANCELED'
                          ELSE 'PENDING' END AS status) AS s

-- name: analytics_scale_lines
-- `lines` stored lines of each RUNNING job of the user: what analytics count in job_logs.
INSERT INTO job_logs (job_id, attempt, seq, stream, ts, line)
SELECT j.id, 1, s, 'stdout', now(), 'line ' || s
FROM jobs AS j, generate_series(0, %(lines)s - 1) AS s
WHERE j.user_id = %(user_id)s AND j.status = 'RUNNING'

-- name: analytics_scale_drop_index
DROP INDEX jobs_user_analytics_idx

-- name: analytics_scale_create_index
CREATE INDEX jobs_user_analytics_idx ON jobs (user_id, created_at)
    INCLUDE (status, started_at, finished_at, log_lines)

-- name: floor_create
-- The floor scenario's table: the least a queue of jobs needs, no index but the primary key.
CREATE TABLE floor_jobs (
    id            uuid PRIMARY KEY,
    workflow_id   uuid NOT NULL,
    scheduled_at  timestamptz NOT NULL,
    status        text NOT NULL,
    started_at    timestamptz,
    finished_at   timestamptz
)

-- name: floor_insert
-- One batch of jobs, written once, QUEUED; arrays in binary, as the scheduler sends them.
INSERT INTO floor_jobs (id, workflow_id, scheduled_at, status)
SELECT t.id, t.workflow_id, t.scheduled_at, 'QUEUED'
FROM unnest(%(ids)b::uuid[], %(workflow_ids)b::uuid[], %(slots)b::timestamptz[])
    AS t(id, workflow_id, scheduled_at)

-- name: floor_claim
-- A consumed batch's claim: only jobs still QUEUED (a redelivered message claims nothing).
UPDATE floor_jobs SET status = 'RUNNING', started_at = now()
WHERE id = ANY(%(ids)b::uuid[]) AND status = 'QUEUED'
RETURNING id

-- name: floor_complete
UPDATE floor_jobs SET status = 'COMPLETED', finished_at = now()
WHERE id = ANY(%(ids)b::uuid[]) AND status = 'RUNNING'

-- name: floor_counts
SELECT count(*) AS n, count(*) FILTER (WHERE status = 'COMPLETED') AS completed FROM floor_jobs

-- name: floor_reset
TRUNCATE floor_jobs
