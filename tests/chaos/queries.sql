-- What the chaos suite reads from its own database to judge the system after each fault.

-- name: job_states
SELECT j.id, j.workflow_id, w.kind, j.status, j.attempt, j.exit_code, j.error, j.created_at,
       j.finished_at, j.logs_attempt, j.logs_last_seq, j.logs_closed_at IS NOT NULL AS logs_closed,
       j.logs_incomplete
FROM jobs j JOIN workflows w ON w.id = j.workflow_id
WHERE j.created_at <= %(until)s

-- name: job_ids
SELECT id FROM jobs

-- name: logs_of
SELECT job_id, attempt, seq, stream, line FROM job_logs
WHERE job_id = ANY(%(job_ids)s::uuid[])
ORDER BY job_id, attempt, seq

-- name: running_container_jobs
SELECT j.id FROM jobs j
WHERE j.status = 'RUNNING' AND j.workflow_id = ANY(%(workflow_ids)s::uuid[])
  AND j.started_at < now() - make_interval(secs => %(for_s)s)

-- name: workflow_built
SELECT build_status FROM workflows WHERE id = %(id)s

-- name: slot_count
-- How the schedule slots of the given interval workflows ended, from each workflow's first slot
-- (its creation) up to %(until)s: with an AUTOMATIC job, a recorded skip, or neither.
WITH wf AS (
    SELECT w.id, make_interval(mins => w.interval_minutes) AS step, w.created_at AS first_slot
    FROM workflows w
    WHERE w.id = ANY(%(workflow_ids)s::uuid[])
), slots AS (
    SELECT wf.id AS workflow_id, s.slot
    FROM wf, generate_series(wf.first_slot, %(until)s::timestamptz, wf.step) AS s(slot)
), judged AS (
    SELECT s.workflow_id, s.slot,
           (SELECT count(*) FROM jobs j
            WHERE j.workflow_id = s.workflow_id AND j.trigger = 'AUTOMATIC'
              AND j.scheduled_at = s.slot) AS jobs,
           (SELECT count(*) FROM skipped_runs k
            WHERE k.workflow_id = s.workflow_id
              AND s.slot BETWEEN k.first_scheduled_at AND k.last_scheduled_at) AS skips
    FROM slots s
)
SELECT count(*) AS slots,
       count(*) FILTER (WHERE jobs = 1 AND skips = 0) AS ran,
       count(*) FILTER (WHERE jobs = 0 AND skips = 1) AS skipped,
       count(*) FILTER (WHERE jobs + skips = 0) AS missed,
       count(*) FILTER (WHERE jobs + skips > 1) AS duplicated,
       (SELECT count(*) FROM jobs j JOIN wf ON wf.id = j.workflow_id
        WHERE j.trigger = 'AUTOMATIC'
          AND NOT EXISTS (SELECT 1 FROM slots s
                          WHERE s.workflow_id = j.workflow_id AND s.slot = j.scheduled_at)
          AND j.scheduled_at <= %(until)s) AS off_grid
FROM judged
