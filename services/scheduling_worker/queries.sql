-- Queries of the scheduling worker.

-- name: claim_due_workflows
SELECT w.*,
       EXISTS (SELECT 1 FROM jobs j
               WHERE j.workflow_id = w.id AND j.status IN ('PENDING', 'QUEUED', 'RUNNING'))
           AS has_active_job
FROM workflows w
WHERE w.build_status = 'COMPLETED'
  AND w.terminated_at IS NULL
  AND w.paused_at IS NULL
  AND w.next_run_at <= %(now)s
ORDER BY w.next_run_at
LIMIT %(limit)s
FOR UPDATE OF w SKIP LOCKED

-- name: claim_pending_jobs
SELECT id, workflow_id, trigger, scheduled_at FROM jobs
WHERE status = 'PENDING' AND run_after <= now()
ORDER BY run_after
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED

-- name: mark_queued
UPDATE jobs
SET status = 'QUEUED', queued_at = now(), published_at = now(), publish_count = publish_count + 1
WHERE id = ANY(%(ids)b::uuid[]) AND status = 'PENDING'

-- name: claim_stale_queued_jobs
SELECT id, workflow_id FROM jobs
WHERE status = 'QUEUED' AND published_at < now() - make_interval(secs => %(after_s)s)
ORDER BY published_at
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED

-- name: mark_republished
UPDATE jobs SET published_at = now(), publish_count = publish_count + 1
WHERE id = ANY(%(ids)b::uuid[]) AND status = 'QUEUED'

-- name: claim_outbox
SELECT id, topic, key, payload FROM outbox
WHERE published_at IS NULL
ORDER BY id
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED

-- name: mark_outbox_published
UPDATE outbox SET published_at = now() WHERE id = ANY(%(ids)b::bigint[])

-- name: prune_outbox
DELETE FROM outbox WHERE id IN (
    SELECT id FROM outbox
    WHERE published_at < now() - make_interval(secs => %(keep_s)s)
    LIMIT 10000
)

-- name: prune_idempotency_keys
DELETE FROM idempotency_keys WHERE (user_id, key) IN (
    SELECT user_id, key FROM idempotency_keys WHERE expires_at <= now() LIMIT 10000
)
