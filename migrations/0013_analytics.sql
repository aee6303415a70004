-- Analytics (docs/notifications.md "Analytics"): a user's or a workflow's jobs over a window,
-- computed in Postgres. The measurements behind these choices are in docs/benchmarks.md.

-- The stored log lines of a job, all attempts, as counted by the log processor when it stores an
-- attempt's end marker (the UPDATE it already runs then: nothing is written per line). Analytics
-- sum this instead of counting job_logs, which holds many rows per job.
ALTER TABLE jobs ADD COLUMN log_lines bigint NOT NULL DEFAULT 0 CHECK (log_lines >= 0);
UPDATE jobs AS j SET log_lines = c.n
FROM (SELECT job_id, count(*) AS n FROM job_logs GROUP BY job_id) AS c
WHERE c.job_id = j.id;

-- A user's jobs created in a window, with what the figures need: an index-only scan of the
-- window, never the whole table or the job rows.
CREATE INDEX jobs_user_analytics_idx ON jobs (user_id, created_at)
    INCLUDE (status, started_at, finished_at, log_lines);

-- Container jobs whose current attempt's lines are not yet counted in log_lines (running, or its
-- end marker never came): analytics count their lines in job_logs. Few rows at any time.
CREATE INDEX jobs_logs_uncounted_idx ON jobs (user_id, created_at)
    WHERE container_id IS NOT NULL
      AND (logs_closed_at IS NULL OR coalesce(logs_attempt, 1) < attempt);
