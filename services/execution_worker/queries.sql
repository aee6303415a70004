-- Queries of the execution worker, run by its JobStore (store.py). Every write after the claim
-- checks the lease token (fencing): a worker that lost its lease changes nothing.

-- name: claim_jobs
-- Takes these jobs from PENDING/QUEUED to RUNNING under a new lease token; a duplicate or stale
-- message finds nothing. With liveness_only, only the liveness HEARTBEATs among them
-- (chronoverse_is_liveness, migrations/0006_liveness.sql: nothing to run), which are claimed
-- together; the rest are left for a claim one at a time, when a slot is free to run them.
-- logs_incomplete describes the job's latest attempt: a new attempt starts without a gap.
UPDATE jobs AS j
SET status = 'RUNNING',
    attempt = j.attempt + 1,
    lease_owner = %(owner)s,
    lease_token = j.lease_token + 1,
    lease_expires_at = clock_timestamp() + make_interval(secs => %(lease_s)s),
    started_at = clock_timestamp(),
    logs_incomplete = false
FROM workflows AS w
WHERE j.id = ANY(%(ids)b::uuid[])
  AND j.status IN ('PENDING', 'QUEUED')
  AND j.run_after <= now()
  AND w.id = j.workflow_id
  AND w.terminated_at IS NULL
  AND (NOT %(liveness_only)s OR chronoverse_is_liveness(w.kind, w.payload))
RETURNING j.id, j.workflow_id, j.user_id, j.trigger, j.attempt, j.lease_token, j.queued_at,
          j.started_at, w.kind, w.payload, w.generation,
          j.attempt - j.handed_back AS counted_attempt

-- name: lock_beat_workflows
-- The workflows among these whose jobs run_beats may finish (liveness beats with the canonical
-- empty payload), locked in id order as lock_workflows does, with what their notifications need.
SELECT id, user_id, name, health, consecutive_job_failures_count,
       terminated_at IS NOT NULL AS terminated, true AS liveness
FROM workflows
WHERE id = ANY(%(ids)b::uuid[]) AND kind = 'HEARTBEAT' AND payload = '{}'::jsonb
ORDER BY id FOR UPDATE

-- name: run_beats
-- Liveness beats with the canonical empty payload have nothing to run and nothing to validate:
-- claimed and completed by one UPDATE, PENDING/QUEUED -> COMPLETED under a new attempt and lease
-- token (what claim_jobs then complete_jobs write, in one write of the row; the job_events
-- trigger records `claimed` and `finished`). The caller holds the workflows' locks
-- (lock_beat_workflows). A duplicate or stale message finds nothing, as with claim_jobs.
WITH done AS (
    UPDATE jobs AS j
    SET status = 'COMPLETED',
        attempt = j.attempt + 1,
        lease_owner = %(owner)s,
        lease_token = j.lease_token + 1,
        lease_expires_at = NULL,
        started_at = clock_timestamp(),
        finished_at = clock_timestamp(),
        logs_incomplete = false,
        exit_code = NULL, error = NULL, failure_kind = NULL
    FROM workflows AS w
    WHERE j.id = ANY(%(ids)b::uuid[])
      AND j.workflow_id = ANY(%(workflow_ids)b::uuid[])  -- only jobs whose workflow is locked
      AND j.status IN ('PENDING', 'QUEUED')
      AND j.run_after <= now()
      AND w.id = j.workflow_id
      AND w.terminated_at IS NULL
      AND w.kind = 'HEARTBEAT' AND w.payload = '{}'::jsonb
    RETURNING j.id, j.workflow_id, j.queued_at, j.started_at, j.finished_at
), reset AS (
    UPDATE workflows AS w SET consecutive_job_failures_count = 0
    WHERE w.id IN (SELECT workflow_id FROM done) AND w.consecutive_job_failures_count <> 0
)
SELECT id, workflow_id, queued_at, started_at, finished_at FROM done

-- name: lock_workflows
-- Several jobs' workflows, locked in one order (by id) so that two batches cannot deadlock; with
-- what their notifications need (chronoverse/alerts.py), read under the lock.
SELECT id, user_id, name, health, consecutive_job_failures_count,
       terminated_at IS NOT NULL AS terminated, chronoverse_is_liveness(kind, payload) AS liveness
FROM workflows WHERE id = ANY(%(ids)b::uuid[]) ORDER BY id FOR UPDATE

-- name: complete_jobs
-- complete_job for a batch of (job, lease token) pairs; the caller holds the workflows' locks.
WITH t AS (
    SELECT * FROM unnest(%(ids)b::uuid[], %(tokens)b::bigint[]) AS t(id, token)
), done AS (
    UPDATE jobs AS j
    SET status = 'COMPLETED', finished_at = now(), exit_code = NULL, error = NULL,
        failure_kind = NULL, lease_owner = NULL, lease_expires_at = NULL
    FROM t
    WHERE j.id = t.id AND j.lease_token = t.token AND j.status = 'RUNNING'
    RETURNING j.id, j.workflow_id, j.started_at, j.finished_at
), reset AS (
    UPDATE workflows AS w SET consecutive_job_failures_count = 0
    WHERE w.id IN (SELECT workflow_id FROM done) AND w.consecutive_job_failures_count <> 0
)
SELECT id, workflow_id, started_at, finished_at FROM done

-- name: renew_leases
UPDATE jobs AS j SET lease_expires_at = clock_timestamp() + make_interval(secs => %(lease_s)s)
FROM unnest(%(ids)b::uuid[], %(tokens)b::bigint[]) AS t(id, token)
WHERE j.id = t.id AND j.lease_token = t.token AND j.status = 'RUNNING'
RETURNING j.id

-- name: complete_job
-- A success also resets the workflow's count of consecutive failures, in the same statement (one
-- round trip less per job); the caller already holds the workflow's lock.
WITH done AS (
    UPDATE jobs
    SET status = 'COMPLETED', finished_at = now(), exit_code = %(exit_code)s, error = NULL,
        failure_kind = NULL, lease_owner = NULL, lease_expires_at = NULL
    WHERE id = %(job_id)s AND lease_token = %(token)s AND status = 'RUNNING'
    RETURNING workflow_id, started_at, finished_at
), reset AS (
    UPDATE workflows AS w SET consecutive_job_failures_count = 0
    FROM done
    WHERE w.id = done.workflow_id AND w.consecutive_job_failures_count <> 0
)
SELECT workflow_id, started_at, finished_at FROM done

-- name: fail_job
-- logs_lost: the attempt's worker died (its lease lapsed), so its log end marker never comes.
UPDATE jobs
SET status = 'FAILED', finished_at = now(), exit_code = %(exit_code)s, error = %(error)s,
    failure_kind = %(failure_kind)s, lease_owner = NULL, lease_expires_at = NULL,
    logs_incomplete = logs_incomplete OR %(logs_lost)s
WHERE id = %(job_id)s AND lease_token = %(token)s AND status = 'RUNNING'
RETURNING workflow_id, started_at, finished_at

-- name: retry_job
-- Back to PENDING for another attempt, unless the workflow was terminated meanwhile: then the job
-- is cancelled like the workflow's other pending work (then, as in fail_job, logs_lost marks
-- the gap of a final attempt whose worker died).
UPDATE jobs AS j
SET status = CASE WHEN w.terminated_at IS NULL THEN 'PENDING' ELSE 'CANCELED' END,
    finished_at = CASE WHEN w.terminated_at IS NULL THEN NULL ELSE now() END,
    run_after = %(retry_at)s,
    error = CASE WHEN w.terminated_at IS NULL THEN %(error)s ELSE w.terminated_reason END,
    lease_owner = NULL,
    lease_expires_at = NULL,
    logs_incomplete = j.logs_incomplete OR (%(logs_lost)s AND w.terminated_at IS NOT NULL)
FROM workflows AS w
WHERE j.id = %(job_id)s AND j.lease_token = %(token)s AND j.status = 'RUNNING'
  AND w.id = j.workflow_id
RETURNING j.workflow_id, j.started_at, now() AS finished_at

-- name: hand_back_job
-- A stopping worker returns a job it could not finish. The run keeps its attempt number (its log
-- lines are that attempt's); handed_back makes the retry policy not count it.
UPDATE jobs AS j
SET status = CASE WHEN w.terminated_at IS NULL THEN 'PENDING' ELSE 'CANCELED' END,
    finished_at = CASE WHEN w.terminated_at IS NULL THEN NULL ELSE now() END,
    handed_back = j.handed_back + 1,
    run_after = now(),
    error = %(error)s,
    lease_owner = NULL,
    lease_expires_at = NULL
FROM workflows AS w
WHERE j.id = %(job_id)s AND j.lease_token = %(token)s AND j.status = 'RUNNING'
  AND w.id = j.workflow_id

-- name: lock_workflow_of_job
-- Recording takes the workflow's lock before the job's, in the same order as deleting a workflow
-- (which locks the workflow, then its jobs by cascade), so the two cannot deadlock.
SELECT w.id, w.terminated_at, w.terminated_reason,
       w.user_id, w.name, w.health, w.consecutive_job_failures_count,
       chronoverse_is_liveness(w.kind, w.payload) AS liveness
FROM workflows AS w JOIN jobs AS j ON j.workflow_id = w.id
WHERE j.id = %(job_id)s
FOR UPDATE OF w

-- name: count_failure
UPDATE workflows
SET consecutive_job_failures_count = consecutive_job_failures_count + 1, updated_at = now()
-- A paused workflow counts no failures (its manual runs may still fail).
WHERE id = %(workflow_id)s AND terminated_at IS NULL AND paused_at IS NULL
RETURNING consecutive_job_failures_count, max_consecutive_job_failures_allowed

-- name: expired_leases
SELECT j.id, j.workflow_id, j.attempt, j.lease_token, j.lease_owner, w.kind,
       j.attempt - j.handed_back AS counted_attempt
FROM jobs AS j JOIN workflows AS w ON w.id = j.workflow_id
WHERE j.status = 'RUNNING' AND j.lease_expires_at < clock_timestamp()
ORDER BY j.lease_expires_at
LIMIT %(limit)s

-- name: cancel_job
-- The workflow was terminated while the job ran (its container was stopped): not a failure.
-- logs_lost as in fail_job.
UPDATE jobs
SET status = 'CANCELED', finished_at = now(), exit_code = %(exit_code)s, error = %(error)s,
    lease_owner = NULL, lease_expires_at = NULL,
    logs_incomplete = logs_incomplete OR %(logs_lost)s
WHERE id = %(job_id)s AND lease_token = %(token)s AND status = 'RUNNING'
RETURNING workflow_id, started_at, finished_at

-- name: mark_logs_incomplete
-- Lines of the job's current attempt were lost in shipping: its stored log has a gap. Written
-- before the outcome, under the lease that ran the attempt.
UPDATE jobs SET logs_incomplete = true
WHERE id = %(job_id)s AND lease_token = %(token)s AND status = 'RUNNING'
RETURNING id

-- name: set_container
UPDATE jobs SET container_id = %(container_id)s
WHERE id = %(job_id)s AND lease_token = %(token)s AND status = 'RUNNING'
RETURNING id

-- name: owned_leases
-- Of these (job, lease token) pairs, the ones a live lease still owns.
SELECT j.id FROM jobs AS j
JOIN unnest(%(ids)b::uuid[], %(tokens)b::bigint[]) AS t(id, token)
  ON j.id = t.id AND j.lease_token = t.token
WHERE j.status = 'RUNNING' AND j.lease_expires_at > clock_timestamp()

-- name: touch_volume
-- A job is about to mount the owner's named volume: it exists from now on (or again, with a new
-- id, after its owner deleted it), and the job is recorded as using it.
WITH volume AS (
    INSERT INTO volumes (user_id, name) VALUES (%(user_id)s, %(name)s)
    ON CONFLICT (user_id, name) DO UPDATE SET last_used_at = now()
    RETURNING id
), used AS (
    INSERT INTO job_volumes (job_id, user_id, name) VALUES (%(job_id)s, %(user_id)s, %(name)s)
    ON CONFLICT DO NOTHING
)
SELECT id FROM volume

-- name: known_volumes
-- Which of these (owner, name) pairs still have a row, with its id; the others were deleted by
-- their owner.
SELECT v.user_id, v.name, v.id
FROM volumes AS v
JOIN unnest(%(user_ids)s::uuid[], %(names)s::text[]) AS t(user_id, name)
  ON v.user_id = t.user_id AND v.name = t.name

-- name: record_volume_sizes
UPDATE volumes AS v SET size_bytes = t.size_bytes, size_measured_at = now()
FROM unnest(%(user_ids)s::uuid[], %(names)s::text[], %(sizes)s::bigint[])
    AS t(user_id, name, size_bytes)
WHERE v.user_id = t.user_id AND v.name = t.name

-- name: claim_webhook_deliveries
-- Due webhook deliveries, each held for `lock_s` seconds (a crashed loop's rows come back after
-- that). The attempt is counted when it is taken, so a delivery whose sender dies every time still
-- ends; a row whose last attempt was taken that way is failed by fail_abandoned_webhook_deliveries.
-- Fair between users: an endpoint with a delivery in flight is skipped, every other endpoint
-- offers only its oldest due delivery, and users take turns (each user's oldest first, then each
-- one's second, ...). Two loops claiming at once cannot both send to one endpoint: both offer the
-- same oldest row, and the one that locks it second skips it (or sees it locked on recheck).
WITH due AS (
  SELECT DISTINCT ON (d.webhook_id) d.id, d.next_attempt_at, w.user_id
  FROM webhook_deliveries AS d
  JOIN webhooks AS w ON w.id = d.webhook_id
  WHERE d.status = 'PENDING' AND d.next_attempt_at <= now()
    AND (d.locked_until IS NULL OR d.locked_until <= now())
    AND d.attempts < %(max_attempts)s
    AND NOT EXISTS (
      SELECT 1 FROM webhook_deliveries AS busy
      WHERE busy.webhook_id = d.webhook_id AND busy.status = 'PENDING'
        AND busy.locked_until > now()
    )
  ORDER BY d.webhook_id, d.next_attempt_at, d.id
), turns AS (
  SELECT id, next_attempt_at,
         row_number() OVER (PARTITION BY user_id ORDER BY next_attempt_at, id) AS turn
  FROM due
), taken AS (
  SELECT d.id FROM webhook_deliveries AS d
  JOIN turns AS t ON t.id = d.id
  WHERE d.status = 'PENDING' AND (d.locked_until IS NULL OR d.locked_until <= now())
  ORDER BY t.turn, t.next_attempt_at, t.id
  LIMIT %(limit)s
  FOR UPDATE OF d SKIP LOCKED
)
UPDATE webhook_deliveries AS d
SET attempts = d.attempts + 1,
    locked_until = now() + make_interval(secs => %(lock_s)s::float8)
FROM webhooks AS w, taken
WHERE w.id = d.webhook_id AND d.id = taken.id
RETURNING d.id, d.event, d.payload, d.attempts, w.url, w.secret

-- name: fail_abandoned_webhook_deliveries
-- Deliveries whose last allowed attempt was taken by a loop that never reported back.
UPDATE webhook_deliveries
SET status = 'FAILED', locked_until = NULL, finished_at = now()
WHERE status = 'PENDING' AND next_attempt_at <= now()
  AND attempts >= %(max_attempts)s AND locked_until <= now()

-- name: insert_webhook_attempt
INSERT INTO webhook_attempts (delivery_id, attempt, status_code, duration_ms, error)
VALUES (%(delivery_id)s, %(attempt)s, %(status_code)s, %(duration_ms)s, %(error)s)

-- name: finish_webhook_attempt
-- Only the holder of this attempt writes its outcome: after a lapsed lock another loop may have
-- taken the row (and counted another attempt).
UPDATE webhook_deliveries
SET status = %(status)s::text,
    next_attempt_at = coalesce(%(next_attempt_at)s::timestamptz, next_attempt_at),
    locked_until = NULL,
    finished_at = CASE WHEN %(status)s::text = 'PENDING' THEN NULL ELSE now() END
WHERE id = %(delivery_id)s AND attempts = %(attempt)s AND status = 'PENDING'
