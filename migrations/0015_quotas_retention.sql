-- Quotas, fair dispatch and retention (docs/security.md "Limits and quotas", docs/operations.md
-- "Retention").

-- A slot the scheduler did not run because its owner already had
-- CHRONOVERSE_MAX_ACTIVE_JOBS_PER_USER jobs PENDING, QUEUED or RUNNING.
ALTER TABLE skipped_runs DROP CONSTRAINT skipped_runs_reason_check;
ALTER TABLE skipped_runs ADD CONSTRAINT skipped_runs_reason_check
    CHECK (reason IN ('MISSED', 'OVERLAP', 'PAUSED', 'QUOTA'));

-- A user's unfinished jobs: the active-jobs quota of manual runs and of the scheduler, and the
-- dispatcher's count of each user's jobs in flight. Holds only unfinished rows.
CREATE INDEX jobs_user_active_idx ON jobs (user_id, status)
    WHERE status IN ('PENDING', 'QUEUED', 'RUNNING');
