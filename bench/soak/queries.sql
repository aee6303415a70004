-- Queries of the soak run (bench/soak) against its own database; slot_count is shared with the
-- chaos suite (tests/chaos).

-- name: insert_liveness_workflows
-- Built liveness HEARTBEATs (payload {}), interval %(interval)s minutes, whose first slots are
-- spread evenly over the first interval from %(start)s: as many workflows come due each second.
-- created_at is the first slot, which is where slot_count starts each workflow's schedule.
INSERT INTO workflows (user_id, name, kind, payload, interval_minutes, build_status, next_run_at,
                       created_at, max_consecutive_job_failures_allowed)
SELECT %(user_id)s, 'soak-' || g, 'HEARTBEAT', '{}'::jsonb, %(interval)s, 'COMPLETED', slot, slot,
       100
FROM generate_series(0, %(count)s - 1) AS g,
     LATERAL (SELECT %(start)s::timestamptz
                     + make_interval(secs => g * %(interval)s * 60.0 / %(count)s) AS slot) AS s

-- name: progress
SELECT count(*) AS jobs,
       count(*) FILTER (WHERE status = 'COMPLETED') AS completed,
       count(*) FILTER (WHERE status IN ('FAILED', 'CANCELED')) AS failed,
       count(*) FILTER (WHERE status IN ('PENDING', 'QUEUED', 'RUNNING')) AS active,
       (SELECT count(*) FROM skipped_runs) AS skips
FROM jobs

-- name: caught_up
-- True once the scheduler judged every slot up to %(until)s and no job is unfinished.
SELECT NOT EXISTS (
           SELECT 1 FROM workflows
           WHERE terminated_at IS NULL AND next_run_at <= %(until)s
       )
   AND NOT EXISTS (SELECT 1 FROM jobs WHERE status IN ('PENDING', 'QUEUED', 'RUNNING')) AS done

-- name: terminate_all
UPDATE workflows SET terminated_at = now(), terminated_reason = 'soak over', next_run_at = NULL
WHERE terminated_at IS NULL

-- name: slot_count
-- How the schedule slots of interval workflows ended, from each workflow's first slot (its
-- created_at) up to %(until)s, or to 5 s before it was terminated: with an AUTOMATIC job, a
-- recorded skip, or neither. %(workflow_ids)s NULL: every interval workflow. Only built
-- workflows owe slots; one built late records the slots it missed meanwhile as a MISSED skip.
WITH wf AS (
    SELECT w.id, make_interval(mins => w.interval_minutes) AS step, w.created_at AS first_slot,
           LEAST(%(until)s::timestamptz, w.terminated_at - interval '5 seconds') AS last_slot
    FROM workflows w
    WHERE w.interval_minutes IS NOT NULL AND w.build_status = 'COMPLETED'
      AND (%(workflow_ids)s::uuid[] IS NULL OR w.id = ANY(%(workflow_ids)s::uuid[]))
), slots AS (
    SELECT wf.id AS workflow_id, s.slot
    FROM wf, generate_series(wf.first_slot, wf.last_slot, wf.step) AS s(slot)
), judged AS (
    SELECT s.workflow_id, s.slot,
           (SELECT count(*) FROM jobs j
            WHERE j.workflow_id = s.workflow_id AND j.trigger = 'AUTOMATIC'
              AND j.scheduled_at = s.slot) AS jobs,
           (SELECT count(*) FROM skipped_runs k
            WHERE k.workflow_id = s.workflow_id
              AND s.slot BETWEEN k.first_scheduled_at AND k.last_scheduled_at) AS skips,
           (SELECT min(k.reason) FROM skipped_runs k
            WHERE k.workflow_id = s.workflow_id
              AND s.slot BETWEEN k.first_scheduled_at AND k.last_scheduled_at) AS skip_reason
    FROM slots s
)
SELECT count(*) AS slots,
       count(*) FILTER (WHERE jobs = 1 AND skips = 0) AS ran,
       count(*) FILTER (WHERE jobs = 0 AND skips = 1) AS skipped,
       count(*) FILTER (WHERE jobs = 0 AND skips = 1 AND skip_reason = 'MISSED') AS skipped_missed,
       count(*) FILTER (WHERE jobs = 0 AND skips = 1 AND skip_reason = 'OVERLAP') AS skipped_overlap,
       count(*) FILTER (WHERE jobs + skips = 0) AS missed,
       count(*) FILTER (WHERE jobs + skips > 1) AS duplicated,
       (SELECT count(*) FROM jobs j JOIN wf ON wf.id = j.workflow_id
        WHERE j.trigger = 'AUTOMATIC' AND j.scheduled_at <= wf.last_slot
          AND NOT EXISTS (SELECT 1 FROM slots s
                          WHERE s.workflow_id = j.workflow_id AND s.slot = j.scheduled_at))
           AS off_grid
FROM judged

-- name: skipped_slot_sum
-- The slots the skip records themselves claim (their `slots` column), for comparison.
SELECT coalesce(sum(slots), 0) AS slots FROM skipped_runs

-- name: lags
-- Seconds from a job's slot to its creation, and to its start, at the given percentiles (0..1).
SELECT percentile_cont(%(fractions)s::float8[]) WITHIN GROUP (
           ORDER BY extract(epoch FROM created_at - scheduled_at)) AS created,
       percentile_cont(%(fractions)s::float8[]) WITHIN GROUP (
           ORDER BY extract(epoch FROM started_at - scheduled_at)) AS started,
       max(extract(epoch FROM started_at - scheduled_at)) AS started_max
FROM jobs
WHERE trigger = 'AUTOMATIC' AND started_at IS NOT NULL AND scheduled_at <= %(until)s

-- name: job_statuses
SELECT status, count(*) AS n FROM jobs WHERE scheduled_at <= %(until)s GROUP BY status
