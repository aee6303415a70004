-- Automatic jobs written once (issue 19; docs/benchmarks.md, "Scheduler"). The scheduler inserts
-- a job QUEUED, already counted as published, in the transaction that advances its workflow, and
-- sends its message right after the commit; before, every job was inserted PENDING and updated to
-- QUEUED by a second transaction. Every write of a job row costs one entry in each of its indexes
-- (a status change is never a HOT update) and a history entry, so this migration also makes the
-- history's `created` entries cheaper and drops what no query reads.

-- `created` entries are written once per INSERT statement, from its transition table, instead of
-- by a PL/pgSQL call per row (bench/job_events_cost.py measured the per-row trigger at about two
-- thirds of the cost of inserting an automatic job). A job the scheduler inserts QUEUED has no
-- separate `published` entry: its `created` entry says status QUEUED, which is what happened, in
-- one statement. A job dispatched later (PENDING -> QUEUED) still gets its `published` entry from
-- chronoverse_job_transition, as do republications.
DROP TRIGGER jobs_created ON jobs;
DROP FUNCTION chronoverse_job_created();

CREATE FUNCTION chronoverse_jobs_created() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    INSERT INTO job_events (job_id, type, at, data)
    SELECT n.id, 'created', clock_timestamp(), jsonb_build_object(
        'trigger', n.trigger,
        'scheduled_at', n.scheduled_at,
        'status', n.status,
        'idempotency_key', n.idempotency_key)
    FROM created_jobs AS n;
    RETURN NULL;
END
$$;

CREATE TRIGGER jobs_created AFTER INSERT ON jobs
    REFERENCING NEW TABLE AS created_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION chronoverse_jobs_created();

-- (status, created_at) over active jobs: every reader of active jobs now filters by user
-- (jobs_user_active_idx), by workflow (jobs_workflow_active_idx) or by one status (the partial
-- indexes of 0003), so this index was written by every job transition and read by nothing.
DROP INDEX jobs_active_idx;

-- jobs.user_id is the workflow's owner, copied at insert so that per-user reads need no join;
-- the workflow's own foreign key (ON DELETE CASCADE) already removes a deleted user's jobs.
-- Checking users on every job insert was a second index lookup per job for nothing.
ALTER TABLE jobs DROP CONSTRAINT jobs_user_id_fkey;

-- A liveness beat with the canonical empty payload is claimed and completed by one UPDATE
-- (services/execution_worker/queries.sql, run_beats): QUEUED -> COMPLETED, one write of the job
-- row instead of two. Its history still reads `claimed` then `finished`: `claimed` is now
-- written for any new attempt taken from PENDING or QUEUED (attempt + 1), not only for a move
-- to RUNNING. The rest of the function is 0012's, unchanged.
CREATE OR REPLACE FUNCTION chronoverse_job_transition() RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
    now_at timestamptz := clock_timestamp();
    reason text;
BEGIN
    -- Sent to the jobs topic: by the dispatcher (PENDING -> QUEUED), or again by the requeue
    -- sweeper because no worker claimed it (its message may have been lost).
    IF NEW.publish_count > OLD.publish_count THEN
        INSERT INTO job_events (job_id, type, at, data)
        VALUES (NEW.id, CASE WHEN OLD.status = 'QUEUED' THEN 'republished' ELSE 'published' END,
                now_at, jsonb_build_object(
                    'publish_count', NEW.publish_count,
                    'previously_published_at', OLD.published_at));
    END IF;

    -- The worker whose lease lapsed: the job leaves RUNNING after its lease had expired, whoever
    -- writes that (lease recovery, or the worker itself coming back late).
    IF OLD.status = 'RUNNING' AND NEW.status <> 'RUNNING' AND OLD.lease_expires_at < now_at THEN
        INSERT INTO job_events (job_id, type, at, data)
        VALUES (NEW.id, 'lease_lost', now_at, jsonb_build_object(
            'worker', OLD.lease_owner,
            'attempt', OLD.attempt,
            'lease_token', OLD.lease_token,
            'expired_at', OLD.lease_expires_at));
    END IF;

    -- Claimed: taken to RUNNING under a new lease, or (a liveness beat, which has nothing to run)
    -- claimed and finished by one statement, straight to COMPLETED.
    IF OLD.status IN ('PENDING', 'QUEUED') AND NEW.attempt > OLD.attempt THEN
        INSERT INTO job_events (job_id, type, at, data)
        VALUES (NEW.id, 'claimed', now_at, jsonb_build_object(
            'worker', NEW.lease_owner,
            'attempt', NEW.attempt,
            'lease_token', NEW.lease_token,
            'lease_expires_at', NEW.lease_expires_at,
            -- How long after its slot (or its manual request) the run started.
            'delay_s', round(extract(epoch FROM NEW.started_at - NEW.scheduled_at)::numeric, 3)));
    END IF;

    IF NEW.container_id IS NOT NULL AND NEW.container_id IS DISTINCT FROM OLD.container_id THEN
        INSERT INTO job_events (job_id, type, at, data)
        VALUES (NEW.id, 'container_started', now_at, jsonb_build_object(
            'container_id', NEW.container_id,
            'attempt', NEW.attempt));
    END IF;

    -- A renewal that came after the lease had expired, before anyone recovered the job.
    IF OLD.status = 'RUNNING' AND NEW.status = 'RUNNING' AND NEW.lease_token = OLD.lease_token
       AND OLD.lease_expires_at < now_at AND NEW.lease_expires_at > now_at THEN
        INSERT INTO job_events (job_id, type, at, data)
        VALUES (NEW.id, 'lease_recovered', now_at, jsonb_build_object(
            'worker', NEW.lease_owner,
            'attempt', NEW.attempt,
            'expired_at', OLD.lease_expires_at,
            'lease_expires_at', NEW.lease_expires_at));
    END IF;

    IF NEW.logs_incomplete AND NOT OLD.logs_incomplete THEN
        INSERT INTO job_events (job_id, type, at, data)
        VALUES (NEW.id, 'log_gap', now_at, jsonb_build_object('attempt', NEW.attempt));
    END IF;

    IF OLD.status = 'RUNNING' AND NEW.status = 'PENDING' THEN
        INSERT INTO job_events (job_id, type, at, data)
        VALUES (NEW.id, 'retry_scheduled', now_at, jsonb_build_object(
            'attempt', OLD.attempt,
            'reason', NEW.error,
            'retry_at', NEW.run_after,
            -- A stopping worker returned it: this attempt does not count against the retries.
            'handed_back', NEW.handed_back > OLD.handed_back));
    END IF;

    IF NEW.status IN ('COMPLETED', 'FAILED') AND NEW.status <> OLD.status THEN
        INSERT INTO job_events (job_id, type, at, data)
        VALUES (NEW.id, 'finished', now_at, jsonb_build_object(
            'status', NEW.status,
            'attempt', NEW.attempt,
            'exit_code', NEW.exit_code,
            'failure_kind', NEW.failure_kind,
            'error', NEW.error,
            'duration_s', round(extract(epoch FROM NEW.finished_at - NEW.started_at)::numeric, 3)));
    END IF;

    IF NEW.status = 'CANCELED' AND OLD.status <> 'CANCELED' THEN
        SELECT w.terminated_reason INTO reason FROM workflows AS w WHERE w.id = NEW.workflow_id;
        reason := coalesce(reason, NEW.error);
        INSERT INTO job_events (job_id, type, at, data)
        VALUES (NEW.id, 'canceled', now_at, jsonb_build_object(
            -- The reasons are written by services/server/store/workflows.py (the user's
            -- terminate and delete) and chronoverse/scheduling.py decide_termination.
            'by', CASE WHEN reason LIKE '% by the user' THEN 'user'
                       WHEN reason LIKE 'terminated after % consecutive failed jobs%'
                           THEN 'auto-termination'
                       ELSE 'system' END,
            'reason', reason,
            'previous_status', OLD.status,
            'attempt', NEW.attempt));
    END IF;

    RETURN NEW;
END
$$;
