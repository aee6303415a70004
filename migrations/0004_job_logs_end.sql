-- The end of a job's logs: the log processor records the end marker's last seq here once every
-- line before it is stored, so live viewers know when to stop.
ALTER TABLE jobs ADD COLUMN logs_last_seq bigint;
ALTER TABLE jobs ADD COLUMN logs_closed_at timestamptz;
