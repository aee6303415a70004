-- Queries of the log processor.

-- name: insert_lines
-- Idempotent: a redelivered batch inserts nothing twice. Each attempt numbers its lines from 0,
-- so a line is (job_id, attempt, seq): a retried job's attempts never overwrite or hide each
-- other. Lines of a job deleted meanwhile (its workflow was deleted) are dropped rather than
-- failing the batch.
INSERT INTO job_logs (job_id, attempt, seq, stream, ts, line)
SELECT t.job_id, t.attempt, t.seq, t.stream, t.ts, t.line
FROM unnest(%(job_ids)b::uuid[], %(attempts)b::integer[], %(seqs)b::bigint[],
            %(streams)b::text[], %(ts)b::timestamptz[], %(lines)b::text[])
     AS t(job_id, attempt, seq, stream, ts, line)
WHERE EXISTS (SELECT 1 FROM jobs AS j WHERE j.id = t.job_id)
ON CONFLICT (job_id, attempt, seq) DO NOTHING

-- name: copy_lines
-- The fast way in: one COPY of a batch's lines. COPY has no ON CONFLICT and no EXISTS guard: a
-- batch with a line stored already (redelivered) or of a job deleted meanwhile fails on the primary
-- or the foreign key, and the processor writes it again with insert_lines in a new transaction.
COPY job_logs (job_id, attempt, seq, stream, ts, line) FROM STDIN

-- name: close_logs
-- Records an attempt's end marker (one per job in the batch). An older attempt's end never
-- replaces a newer one's (a late or redelivered marker); a redelivered marker keeps the first
-- closing time. An incomplete end of the job's current attempt records the gap in the job.
-- log_lines counts the job's stored lines (every attempt), for analytics: once per end marker,
-- after the batch's lines are stored, rather than once per line.
UPDATE jobs AS j
SET logs_last_seq = t.last_seq,
    log_lines = (SELECT count(*) FROM job_logs AS l WHERE l.job_id = j.id),
    logs_attempt = t.attempt,
    logs_closed_at = CASE WHEN coalesce(j.logs_attempt, 1) = t.attempt
                          THEN coalesce(j.logs_closed_at, now()) ELSE now() END,
    logs_incomplete = j.logs_incomplete OR (t.incomplete AND t.attempt = j.attempt)
FROM unnest(%(job_ids)b::uuid[], %(attempts)b::integer[], %(last_seqs)b::bigint[],
            %(incomplete)b::boolean[]) AS t(job_id, attempt, last_seq, incomplete)
WHERE j.id = t.job_id
  AND (j.logs_closed_at IS NULL OR coalesce(j.logs_attempt, 1) <= t.attempt)

-- name: schedule_purge
-- The "retain logs" switch (docs/notifications.md): once an attempt's end marker is stored, the
-- lines of a job whose workflow keeps no logs may go after a grace period in which live viewers
-- can still resume. In the end marker's transaction, after close_logs: logs_attempt is the
-- attempt just ended (or a newer one already ended).
UPDATE jobs AS j
SET logs_purge_after = now() + make_interval(secs => %(grace_s)s),
    logs_purge_attempt = j.logs_attempt
FROM workflows AS w
WHERE j.id = ANY(%(job_ids)b::uuid[])
  AND w.id = j.workflow_id
  AND NOT w.retain_logs
  AND j.logs_closed_at IS NOT NULL

-- name: purge_due_lines
-- Deletes at most `limit` lines (by primary key) of the jobs whose purge is due (the first `jobs`
-- of them, as finish_due_purges takes them) and whose workflow keeps no logs: one bounded
-- statement however many lines a job has. Repeated until it deletes less than `limit`.
WITH due AS (
    SELECT j.id, j.logs_purge_attempt AS attempt
    FROM jobs AS j JOIN workflows AS w ON w.id = j.workflow_id
    WHERE j.logs_purge_after <= now() AND NOT w.retain_logs
    ORDER BY j.logs_purge_after, j.id
    LIMIT %(jobs)s
)
DELETE FROM job_logs AS l
USING (SELECT g.job_id, g.attempt, g.seq
       FROM due CROSS JOIN LATERAL (
           SELECT g.job_id, g.attempt, g.seq FROM job_logs AS g
           WHERE g.job_id = due.id AND g.attempt <= due.attempt
           LIMIT %(limit)s
       ) AS g
       LIMIT %(limit)s) AS d
WHERE l.job_id = d.job_id AND l.attempt = d.attempt AND l.seq = d.seq

-- name: finish_due_purges
-- Records the purge of the jobs whose purge is due (at most `jobs` of them, oldest first; a
-- concurrent purger skips the ones taken) and whose lines purge_due_lines has deleted, so readers
-- stop at once; a job whose workflow was switched back to keeping logs meanwhile keeps its lines
-- and is no longer due. A job with lines left (one that arrived late) stays due.
WITH due AS (
    SELECT j.id, j.logs_purge_attempt AS attempt, NOT w.retain_logs AS purge
    FROM jobs AS j JOIN workflows AS w ON w.id = j.workflow_id
    WHERE j.logs_purge_after <= now()
    ORDER BY j.logs_purge_after, j.id
    LIMIT %(jobs)s
    FOR UPDATE OF j SKIP LOCKED
)
UPDATE jobs AS j
SET logs_purge_after = NULL,
    logs_purge_attempt = NULL,
    logs_purged_attempt = CASE WHEN due.purge THEN due.attempt ELSE j.logs_purged_attempt END
FROM due
WHERE j.id = due.id
  AND NOT (due.purge AND EXISTS (SELECT 1 FROM job_logs AS l
                                 WHERE l.job_id = due.id AND l.attempt <= due.attempt))
