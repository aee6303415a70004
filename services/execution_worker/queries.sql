-- Queries of the execution worker. Every write after the claim checks the lease token (fencing):
-- a worker that lost its lease changes nothing.

-- name: claim_job
UPDATE jobs AS j
SET status = 'RUNNING',
    attempt = j.attempt + 1,
    lease_owner = %(owner)s,
    lease_token = j.lease_token + 1,
    lease_expires_at = now() + make_interval(secs => %(lease_s)s),
    started_at = now()
FROM workflows AS w
WHERE j.id = %(job_id)s
  AND j.status IN ('PENDING', 'QUEUED')
  AND j.run_after <= now()
  AND w.id = j.workflow_id
  AND w.terminated_at IS NULL
RETURNING j.id, j.workflow_id, j.trigger, j.attempt, j.lease_token, j.queued_at, j.started_at,
          w.kind, w.payload

-- name: renew_leases
UPDATE jobs AS j SET lease_expires_at = now() + make_interval(secs => %(lease_s)s)
FROM unnest(%(ids)s::uuid[], %(tokens)s::bigint[]) AS t(id, token)
WHERE j.id = t.id AND j.lease_token = t.token AND j.status = 'RUNNING'
RETURNING j.id

-- name: complete_job
UPDATE jobs
SET status = 'COMPLETED', finished_at = now(), exit_code = %(exit_code)s, error = NULL,
    failure_kind = NULL, lease_owner = NULL, lease_expires_at = NULL
WHERE id = %(job_id)s AND lease_token = %(token)s AND status = 'RUNNING'
RETURNING workflow_id, started_at, finished_at

-- name: fail_job
UPDATE jobs
SET status = 'FAILED', finished_at = now(), exit_code = %(exit_code)s, error = %(error)s,
    failure_kind = %(failure_kind)s, lease_owner = NULL, lease_expires_at = NULL
WHERE id = %(job_id)s AND lease_token = %(token)s AND status = 'RUNNING'
RETURNING workflow_id, started_at, finished_at

-- name: retry_job
UPDATE jobs
SET status = 'PENDING', run_after = %(retry_at)s, error = %(error)s, lease_owner = NULL,
    lease_expires_at = NULL
WHERE id = %(job_id)s AND lease_token = %(token)s AND status = 'RUNNING'
RETURNING workflow_id, started_at, now() AS finished_at

-- name: reset_failures
UPDATE workflows SET consecutive_job_failures_count = 0
WHERE id = %(workflow_id)s AND consecutive_job_failures_count <> 0

-- name: count_failure
UPDATE workflows
SET consecutive_job_failures_count = consecutive_job_failures_count + 1, updated_at = now()
WHERE id = %(workflow_id)s AND terminated_at IS NULL
RETURNING consecutive_job_failures_count, max_consecutive_job_failures_allowed

-- name: claim_expired_leases
SELECT j.id, j.workflow_id, j.attempt, j.lease_token, j.lease_owner, w.kind
FROM jobs AS j JOIN workflows AS w ON w.id = j.workflow_id
WHERE j.status = 'RUNNING' AND j.lease_expires_at < now()
ORDER BY j.lease_expires_at
LIMIT %(limit)s
FOR UPDATE OF j SKIP LOCKED
