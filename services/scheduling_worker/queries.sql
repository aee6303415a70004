-- Queries of the scheduling worker.

-- name: claim_due_beats
-- The common case (docs/architecture.md, "Scheduling"): liveness HEARTBEATs on an interval
-- schedule whose one due slot is less than a minute old and whose previous job is done. For these
-- the planner's answer is known without Python: run the slot (every catch-up policy runs a slot
-- less than a minute late, and no earlier slot was missed), no overlap, no cap (they take no
-- execution slot), and the next slot is the interval later. Everything else is left to
-- claim_due_workflows and the planner.
SELECT w.id, w.user_id, w.next_run_at, w.interval_minutes
FROM workflows AS w
WHERE w.build_status = 'COMPLETED'
  AND w.terminated_at IS NULL
  AND w.paused_at IS NULL
  AND w.next_run_at <= %(now)s
  AND w.next_run_at > %(now)s - interval '1 minute'
  AND w.cron IS NULL
  AND chronoverse_is_liveness(w.kind, w.payload)
  AND NOT EXISTS (SELECT 1 FROM jobs AS j
                  WHERE j.workflow_id = w.id AND j.status IN ('PENDING', 'QUEUED', 'RUNNING'))
ORDER BY w.next_run_at
LIMIT %(limit)s
FOR UPDATE OF w SKIP LOCKED

-- name: write_beats
-- claim_due_beats' workflows (those whose owner has room), in one statement: their jobs inserted
-- QUEUED (published right after the commit) and their schedules advanced by the interval. A slot
-- that already has its job keeps it (one job per nominal slot); the schedule advances anyway.
WITH fire AS (
    SELECT * FROM unnest(%(ids)b::uuid[], %(user_ids)b::uuid[], %(slots)b::timestamptz[],
                         %(minutes)b::integer[]) AS f(id, user_id, next_run_at, interval_minutes)
), advanced AS (
    UPDATE workflows AS w
    SET next_run_at = f.next_run_at + make_interval(mins => f.interval_minutes)
    FROM fire AS f
    WHERE w.id = f.id
)
INSERT INTO jobs (id, workflow_id, user_id, trigger, scheduled_at, status, queued_at,
                  published_at, publish_count)
SELECT gen_random_uuid(), f.id, f.user_id, 'AUTOMATIC', f.next_run_at, 'QUEUED', now(), now(), 1
FROM fire AS f
ON CONFLICT (workflow_id, scheduled_at) WHERE trigger = 'AUTOMATIC' DO NOTHING
RETURNING id, workflow_id, scheduled_at

-- name: lock_users
-- Users a batch may take to their quota or cap, locked for its transaction in id order, so that
-- the lanes of a scheduling worker count each other's jobs (each counts after the other commits)
-- instead of filling the same room. One held by another transaction is skipped, never waited for.
SELECT id FROM users WHERE id = ANY(%(ids)b::uuid[]) ORDER BY id FOR NO KEY UPDATE SKIP LOCKED

-- name: claim_due_workflows
-- Due workflows, locked, with only what planning their fire needs (never the payload): the
-- schedule and catch-up columns, whether a job of theirs is still active (the overlap policy,
-- jobs_workflow_active_idx) and whether their jobs take an execution slot (the in-flight cap).
SELECT w.id, w.user_id, w.next_run_at, w.interval_minutes, w.cron, w.timezone, w.dst_gap,
       w.dst_overlap, w.catchup, w.catchup_window_minutes,
       NOT chronoverse_is_liveness(w.kind, w.payload) AS takes_slot,
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

-- name: count_active_jobs_by_user
-- What each of these users has PENDING, QUEUED or RUNNING (the active-jobs quota), from
-- jobs_user_active_idx.
SELECT user_id, count(*) AS n FROM jobs
WHERE user_id = ANY(%(user_ids)b::uuid[]) AND status IN ('PENDING', 'QUEUED', 'RUNNING')
GROUP BY user_id

-- name: next_due_at
-- When the next schedulable workflow comes due (the first entry of workflows_due_idx), so an idle
-- scheduler wakes at that slot rather than at its next poll.
SELECT min(next_run_at) AS at FROM workflows
WHERE build_status = 'COMPLETED' AND terminated_at IS NULL AND paused_at IS NULL

-- name: slot_loads
-- For the in-flight cap, per user among these: their jobs that take an execution slot QUEUED or
-- RUNNING, and whether ready ones already wait PENDING (new jobs queue behind them). From
-- jobs_user_active_idx; liveness HEARTBEATs take no slot and are left out.
SELECT j.user_id,
       count(*) FILTER (WHERE j.status IN ('QUEUED', 'RUNNING')) AS in_flight,
       coalesce(bool_or(j.status = 'PENDING' AND j.run_after <= now()), false) AS waiting
FROM jobs AS j JOIN workflows AS w ON w.id = j.workflow_id
WHERE j.user_id = ANY(%(user_ids)b::uuid[]) AND j.status IN ('PENDING', 'QUEUED', 'RUNNING')
  AND NOT chronoverse_is_liveness(w.kind, w.payload)
GROUP BY j.user_id

-- name: claim_pending_jobs
-- Ready PENDING jobs, fair between users. Each user's ready jobs are numbered in readiness order
-- (their turn), and the batch takes every user's first job before anyone's second: round-robin,
-- so one user's backlog cannot hold back another user's jobs. A user gets no more than
-- max_in_flight jobs QUEUED or RUNNING at once that take an execution slot; the rest wait
-- PENDING. Liveness HEARTBEATs (chronoverse_is_liveness: nothing to run, claimed by the hundred
-- and done in milliseconds) take no slot: they neither count nor wait. Numbering reads every
-- ready job, which the active-jobs quota bounds per user. Rows another scheduling worker holds
-- are skipped, and a row it published meanwhile fails the status check once locked, so no job
-- is published twice.
WITH ready AS (
    SELECT j.id, j.user_id, j.run_after, l.free,
           row_number() OVER (PARTITION BY j.user_id ORDER BY j.run_after, j.id) AS turn,
           count(*) FILTER (WHERE NOT l.free)
               OVER (PARTITION BY j.user_id ORDER BY j.run_after, j.id) AS slot_turn
    FROM jobs AS j
    JOIN workflows AS w ON w.id = j.workflow_id
    CROSS JOIN LATERAL (SELECT chronoverse_is_liveness(w.kind, w.payload) AS free) AS l
    WHERE j.status = 'PENDING' AND j.run_after <= now()
), in_flight AS (
    SELECT j.user_id, count(*) AS n
    FROM jobs AS j JOIN workflows AS w ON w.id = j.workflow_id
    WHERE j.user_id IN (SELECT DISTINCT user_id FROM ready WHERE NOT free)
      AND j.status IN ('QUEUED', 'RUNNING')
      AND NOT chronoverse_is_liveness(w.kind, w.payload)
    GROUP BY j.user_id
), allowed AS (
    SELECT r.id, r.turn, r.run_after
    FROM ready AS r LEFT JOIN in_flight AS f ON f.user_id = r.user_id
    WHERE r.free OR r.slot_turn <= %(max_in_flight)s - coalesce(f.n, 0)
    ORDER BY r.turn, r.run_after, r.id
    LIMIT %(limit)s
)
SELECT j.id, j.workflow_id, j.trigger, j.scheduled_at
FROM allowed AS a JOIN jobs AS j ON j.id = a.id
WHERE j.status = 'PENDING'
ORDER BY a.turn, a.run_after, a.id
FOR UPDATE OF j SKIP LOCKED

-- name: held_back_users
-- After a dispatch pass that did not fill its batch: the users whose ready jobs that take a slot
-- still wait (held back by the in-flight cap, or taken by another scheduling worker), with their
-- slot-taking jobs in flight.
SELECT r.user_id, f.n AS in_flight
FROM (SELECT DISTINCT j.user_id FROM jobs AS j JOIN workflows AS w ON w.id = j.workflow_id
      WHERE j.status = 'PENDING' AND j.run_after <= now()
        AND NOT chronoverse_is_liveness(w.kind, w.payload)) AS r
CROSS JOIN LATERAL (SELECT count(*) AS n FROM jobs AS j JOIN workflows AS w ON w.id = j.workflow_id
                    WHERE j.user_id = r.user_id AND j.status IN ('QUEUED', 'RUNNING')
                      AND NOT chronoverse_is_liveness(w.kind, w.payload)) AS f

-- name: count_in_flight
-- The probe between dispatches while users are held back: their slot-taking jobs QUEUED or
-- RUNNING, from jobs_user_active_idx (at most the cap's worth of rows per user, plus liveness
-- beats in flight), instead of numbering every ready job again as claim_pending_jobs does.
SELECT count(*) AS n FROM jobs AS j JOIN workflows AS w ON w.id = j.workflow_id
WHERE j.user_id = ANY(%(user_ids)b::uuid[]) AND j.status IN ('QUEUED', 'RUNNING')
  AND NOT chronoverse_is_liveness(w.kind, w.payload)

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

-- Retention (retention.py): a pass walks every workflow in windows of ids; per window, each
-- statement deletes at most `limit` rows, so none holds locks or runs for long.

-- name: retention_window
SELECT id FROM workflows WHERE id > %(after)s ORDER BY id LIMIT %(limit)s

-- name: doomed_jobs
-- Finished jobs of these workflows created before `before`, or past each workflow's newest `keep`
-- jobs (jobs_workflow_page_idx): at most `limit`, oldest first. Retention deletes their log lines
-- and history in batches of rows (prune_job_lines, prune_job_events), then the jobs (prune_jobs).
SELECT d.id
FROM unnest(%(workflow_ids)b::uuid[]) AS w (id)
CROSS JOIN LATERAL (
    (SELECT j.id, j.created_at FROM jobs AS j
     WHERE j.workflow_id = w.id AND j.created_at < %(before)s
       AND j.status IN ('COMPLETED', 'FAILED', 'CANCELED')
     ORDER BY j.created_at, j.id
     LIMIT %(limit)s)
    UNION
    (SELECT o.id, o.created_at FROM (SELECT j.id, j.status, j.created_at FROM jobs AS j
                                     WHERE j.workflow_id = w.id
                                     ORDER BY j.created_at DESC, j.id DESC
                                     OFFSET %(keep)s LIMIT %(limit)s) AS o
     WHERE o.status IN ('COMPLETED', 'FAILED', 'CANCELED'))
) AS d
ORDER BY d.created_at, d.id
LIMIT %(limit)s

-- name: prune_job_lines
-- At most `limit` log lines of these jobs, by primary key, and only while the job is finished:
-- one bounded statement however many lines a job has (a job may have millions).
DELETE FROM job_logs AS l
USING (SELECT g.job_id, g.attempt, g.seq FROM job_logs AS g
       WHERE g.job_id = ANY(%(job_ids)b::uuid[])
         AND EXISTS (SELECT 1 FROM jobs AS j
                     WHERE j.id = g.job_id AND j.status IN ('COMPLETED', 'FAILED', 'CANCELED'))
       LIMIT %(limit)s) AS d
WHERE l.job_id = d.job_id AND l.attempt = d.attempt AND l.seq = d.seq

-- name: prune_job_events
-- At most `limit` history entries of these jobs (job_events_job_idx), while the job is finished.
DELETE FROM job_events WHERE id IN (
    SELECT e.id FROM job_events AS e
    WHERE e.job_id = ANY(%(job_ids)b::uuid[])
      AND EXISTS (SELECT 1 FROM jobs AS j
                  WHERE j.id = e.job_id AND j.status IN ('COMPLETED', 'FAILED', 'CANCELED'))
    LIMIT %(limit)s
)

-- name: prune_jobs
-- These jobs, once their log lines are gone (a line that arrived late keeps its job until the
-- next pass, so the cascade stays small: a few volume records and history entries at most). The
-- DELETE checks the status on the locked row: an active job is never deleted.
DELETE FROM jobs AS j
WHERE j.id = ANY(%(job_ids)b::uuid[])
  AND j.status IN ('COMPLETED', 'FAILED', 'CANCELED')
  AND NOT EXISTS (SELECT 1 FROM job_logs AS l WHERE l.job_id = j.id)

-- name: prune_skips
-- Skipped-slot entries of these workflows created before `before`, or past each workflow's
-- newest `keep` (skipped_runs_workflow_idx).
WITH doomed AS (
    SELECT d.id
    FROM unnest(%(workflow_ids)b::uuid[]) AS w (id)
    CROSS JOIN LATERAL (
        (SELECT s.id FROM skipped_runs AS s
         WHERE s.workflow_id = w.id AND s.created_at < %(before)s
         ORDER BY s.created_at
         LIMIT %(limit)s)
        UNION
        (SELECT s.id FROM skipped_runs AS s
         WHERE s.workflow_id = w.id
         ORDER BY s.created_at DESC
         OFFSET %(keep)s LIMIT %(limit)s)
    ) AS d
    LIMIT %(limit)s
)
DELETE FROM skipped_runs AS s USING doomed WHERE s.id = doomed.id

-- name: prune_notifications
-- Notifications created before `before`, oldest first (notifications_created_idx), read or not.
DELETE FROM notifications WHERE id IN (
    SELECT id FROM notifications WHERE created_at < %(before)s ORDER BY created_at LIMIT %(limit)s
)

-- name: prune_webhook_deliveries
-- Finished (DELIVERED or FAILED) webhook deliveries created before `before`, with their attempts
-- (by cascade); a PENDING one is kept until it ends.
DELETE FROM webhook_deliveries WHERE id IN (
    SELECT id FROM webhook_deliveries
    WHERE status <> 'PENDING' AND created_at < %(before)s
    ORDER BY created_at LIMIT %(limit)s
)
