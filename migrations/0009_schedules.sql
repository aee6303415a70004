-- Cron schedules in a time zone with a DST policy, pause and resume, and a catch-up policy.
-- A workflow has exactly one schedule: every `interval_minutes`, or a `cron` expression.
ALTER TABLE workflows ALTER COLUMN interval_minutes DROP NOT NULL;
ALTER TABLE workflows ADD COLUMN cron text;
ALTER TABLE workflows ADD CONSTRAINT workflows_one_schedule
    CHECK ((interval_minutes IS NULL) <> (cron IS NULL));
ALTER TABLE workflows ADD COLUMN timezone text NOT NULL DEFAULT 'UTC';
ALTER TABLE workflows ADD COLUMN dst_gap text NOT NULL DEFAULT 'shift'
    CHECK (dst_gap IN ('shift', 'skip'));
ALTER TABLE workflows ADD COLUMN dst_overlap text NOT NULL DEFAULT 'once'
    CHECK (dst_overlap IN ('once', 'twice'));
ALTER TABLE workflows ADD COLUMN catchup text NOT NULL DEFAULT 'latest'
    CHECK (catchup IN ('latest', 'none', 'all'));
ALTER TABLE workflows ADD COLUMN catchup_window_minutes integer
    CHECK (catchup_window_minutes BETWEEN 1 AND 10080);
-- Paused: no automatic jobs, no counted failures; its slots are entered in the ledger on resume.
ALTER TABLE workflows ADD COLUMN paused_at timestamptz;

-- The scheduler's hot path skips paused workflows too.
DROP INDEX IF EXISTS workflows_due_idx;
CREATE INDEX workflows_due_idx ON workflows (next_run_at)
    WHERE terminated_at IS NULL AND build_status = 'COMPLETED' AND paused_at IS NULL;

-- The fire ledger's skips gain PAUSED: a slot that fell while the workflow was paused.
ALTER TABLE skipped_runs DROP CONSTRAINT skipped_runs_reason_check;
ALTER TABLE skipped_runs ADD CONSTRAINT skipped_runs_reason_check
    CHECK (reason IN ('MISSED', 'OVERLAP', 'PAUSED'));
CREATE INDEX skipped_runs_ledger_idx ON skipped_runs (workflow_id, last_scheduled_at DESC, id DESC);
