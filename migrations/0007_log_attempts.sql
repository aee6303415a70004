-- Logs per attempt: a retried job's lines are stored as the attempt that printed them, so what a
-- user reads is one run, never a splice of two (each attempt numbers its lines from 0).
-- Rows stored before this migration belong to attempt 1.
ALTER TABLE job_logs ADD COLUMN attempt integer NOT NULL DEFAULT 1 CHECK (attempt >= 1);
ALTER TABLE job_logs DROP CONSTRAINT job_logs_pkey;
ALTER TABLE job_logs ADD PRIMARY KEY (job_id, attempt, seq);

-- logs_last_seq and logs_closed_at describe the end marker of this attempt (NULL: attempt 1 for
-- rows closed before this migration).
ALTER TABLE jobs ADD COLUMN logs_attempt integer;
-- Lines of the job's final attempt were lost (shipping failed past its retries, or the end marker
-- never arrived): the stored log has a gap, and readers say so.
ALTER TABLE jobs ADD COLUMN logs_incomplete boolean NOT NULL DEFAULT false;
