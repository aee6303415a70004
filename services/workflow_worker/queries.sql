-- Queries of the workflow worker. A build that moves returns what its notification needs
-- (chronoverse/alerts.py).

-- name: complete_build
-- Only the current generation of a live workflow moves; an older event changes nothing.
UPDATE workflows
SET build_status = %(status)s, build_error = %(error)s, updated_at = now()
WHERE id = %(workflow_id)s
  AND generation = %(generation)s
  AND build_status IN ('QUEUED', 'STARTED')
  AND terminated_at IS NULL
RETURNING id, user_id, name, health, consecutive_job_failures_count

-- name: start_build
UPDATE workflows SET build_status = 'STARTED', updated_at = now()
WHERE id = %(workflow_id)s
  AND generation = %(generation)s
  AND build_status IN ('QUEUED', 'STARTED')
  AND terminated_at IS NULL
RETURNING payload, id, user_id, name, health, consecutive_job_failures_count

-- name: finish_build
UPDATE workflows SET build_status = %(status)s, build_error = %(error)s, updated_at = now()
WHERE id = %(workflow_id)s
  AND generation = %(generation)s
  AND build_status = 'STARTED'
  AND terminated_at IS NULL
RETURNING id, user_id, name, health, consecutive_job_failures_count
