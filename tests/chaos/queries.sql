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

-- name: poison_targets
-- A workflow's owner and its first COMPLETED job: real ids for the poison messages to name.
SELECT w.user_id,
       (SELECT j.id FROM jobs j WHERE j.workflow_id = w.id AND j.status = 'COMPLETED'
        ORDER BY j.created_at LIMIT 1) AS job_id
FROM workflows w WHERE w.id = %(id)s

-- name: log_shipping_recovered
-- The creation time of the first CONTAINER job created after %(after)s whose log is complete
-- and after which no job's log was marked incomplete, once every CONTAINER job created up to it
-- is final with its log settled (no row: not yet).
WITH c AS (
    SELECT j.created_at, j.status, j.attempt, j.logs_incomplete,
           j.logs_closed_at IS NOT NULL AND coalesce(j.logs_attempt, 1) = j.attempt AS closed
    FROM jobs j JOIN workflows w ON w.id = j.workflow_id
    WHERE w.kind = 'CONTAINER' AND j.created_at > %(after)s
), first_good AS (
    SELECT min(c.created_at) AS at FROM c
    WHERE c.status = 'COMPLETED' AND c.closed AND NOT c.logs_incomplete
      AND c.created_at > coalesce((SELECT max(created_at) FROM c WHERE logs_incomplete),
                                  '-infinity')
)
SELECT f.at AS recovered_at FROM first_good f
WHERE f.at IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM c WHERE c.created_at <= f.at
                  AND (c.status NOT IN ('COMPLETED', 'FAILED', 'CANCELED')
                       OR (c.attempt > 0 AND NOT (c.closed OR c.logs_incomplete))))
