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
