-- Queries of the log processor.

-- name: insert_lines
-- Idempotent: a redelivered batch inserts nothing twice. Lines of a job deleted meanwhile (its
-- workflow was deleted) are dropped rather than failing the batch.
INSERT INTO job_logs (job_id, seq, stream, ts, line)
SELECT t.job_id, t.seq, t.stream, t.ts, t.line
FROM unnest(%(job_ids)b::uuid[], %(seqs)b::bigint[], %(streams)b::text[],
            %(ts)b::timestamptz[], %(lines)b::text[]) AS t(job_id, seq, stream, ts, line)
WHERE EXISTS (SELECT 1 FROM jobs AS j WHERE j.id = t.job_id)
ON CONFLICT (job_id, seq) DO NOTHING

-- name: close_logs
UPDATE jobs AS j SET logs_last_seq = t.last_seq, logs_closed_at = coalesce(j.logs_closed_at, now())
FROM unnest(%(job_ids)b::uuid[], %(last_seqs)b::bigint[]) AS t(job_id, last_seq)
WHERE j.id = t.job_id
