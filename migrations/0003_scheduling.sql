-- Scheduling and execution: delivery bookkeeping, retry backoff, and a ledger of skipped slots.

-- When a PENDING job may be published (a SYSTEM retry waits for its backoff).
ALTER TABLE jobs ADD COLUMN run_after timestamptz NOT NULL DEFAULT now();
-- The last time the job was sent to the `jobs` topic; a QUEUED job not claimed long after this is
-- sent again (its message may have been lost with a broker's data).
ALTER TABLE jobs ADD COLUMN published_at timestamptz;
ALTER TABLE jobs ADD COLUMN publish_count integer NOT NULL DEFAULT 0;

-- The dispatcher's hot path: pending jobs by readiness.
CREATE INDEX jobs_pending_idx ON jobs (run_after) WHERE status = 'PENDING';
-- The overlap check and lease recovery.
CREATE INDEX jobs_workflow_active_idx ON jobs (workflow_id) WHERE status IN ('PENDING', 'QUEUED', 'RUNNING');
CREATE INDEX jobs_running_lease_idx ON jobs (lease_expires_at) WHERE status = 'RUNNING';
CREATE INDEX jobs_queued_idx ON jobs (published_at) WHERE status = 'QUEUED';

-- Slots that did not get a job, and why: missed during downtime (only the latest missed slot
-- runs), or skipped because the previous job was still active.
CREATE TABLE skipped_runs (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workflow_id         uuid NOT NULL REFERENCES workflows (id) ON DELETE CASCADE,
    reason              text NOT NULL CHECK (reason IN ('MISSED', 'OVERLAP')),
    first_scheduled_at  timestamptz NOT NULL,
    last_scheduled_at   timestamptz NOT NULL,
    slots               integer NOT NULL CHECK (slots >= 1),
    detail              text NOT NULL DEFAULT '',
    created_at          timestamptz NOT NULL DEFAULT now(),
    CHECK (first_scheduled_at <= last_scheduled_at)
);
CREATE INDEX skipped_runs_workflow_idx ON skipped_runs (workflow_id, created_at DESC);
