-- Queries of the workflow worker.

-- name: complete_build
-- Only the current generation of a live workflow moves; an older event changes nothing.
UPDATE workflows
SET build_status = 'COMPLETED', build_error = NULL, updated_at = now()
WHERE id = %(workflow_id)s
  AND generation = %(generation)s
  AND build_status IN ('QUEUED', 'STARTED')
  AND terminated_at IS NULL
RETURNING id
