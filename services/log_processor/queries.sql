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

-- name: close_logs
-- Records an attempt's end marker (one per job in the batch). An older attempt's end never
-- replaces a newer one's (a late or redelivered marker); a redelivered marker keeps the first
-- closing time. An incomplete end of the job's current attempt records the gap in the job.
UPDATE jobs AS j
SET logs_last_seq = t.last_seq,
    logs_attempt = t.attempt,
    logs_closed_at = CASE WHEN coalesce(j.logs_attempt, 1) = t.attempt
                          THEN coalesce(j.logs_closed_at, now()) ELSE now() END,
    logs_incomplete = j.logs_incomplete OR (t.incomplete AND t.attempt = j.attempt)
FROM unnest(%(job_ids)b::uuid[], %(attempts)b::integer[], %(last_seqs)b::bigint[],
            %(incomplete)b::boolean[]) AS t(job_id, attempt, last_seq, incomplete)
WHERE j.id = t.job_id
  AND (j.logs_closed_at IS NULL OR coalesce(j.logs_attempt, 1) <= t.attempt)
