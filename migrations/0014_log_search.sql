-- Log search and the "retain logs" switch (docs/notifications.md).

-- Search (ILIKE '%text%' over one attempt's lines) adds no index: it scans the attempt's lines
-- in primary-key order, which stops as soon as a page is full. A trigram index would make rare
-- terms in very long logs faster but cost every log line stored four times the insert time;
-- the measurements behind this choice are in docs/benchmarks.md ("Log search at scale").

-- A workflow with retain_logs false keeps its lines only while live viewers may still resume:
-- when an attempt's end marker is stored, the log processor sets logs_purge_after (now plus a
-- grace period) and logs_purge_attempt; from then on it deletes the lines of the attempts up to
-- logs_purge_attempt, and records in logs_purged_attempt what was deleted, so readers stop at
-- once instead of waiting for lines that will not come.
ALTER TABLE jobs ADD COLUMN logs_purge_after timestamptz;
ALTER TABLE jobs ADD COLUMN logs_purge_attempt integer;
ALTER TABLE jobs ADD COLUMN logs_purged_attempt integer;
CREATE INDEX jobs_logs_purge_due_idx ON jobs (logs_purge_after)
    WHERE logs_purge_after IS NOT NULL;
