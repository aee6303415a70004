-- What a liveness job is, defined once for SQL: a HEARTBEAT whose payload has no endpoint (or a
-- null one). It has nothing to run, so the execution worker claims such jobs in one statement and
-- records them in one transaction. chronoverse.payloads.is_liveness is the same predicate for
-- Python; an integration test checks that the two agree.
--
-- A plain SQL expression, IMMUTABLE and not STRICT, so the planner inlines it into the claim.
CREATE FUNCTION chronoverse_is_liveness(kind text, payload jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT kind = 'HEARTBEAT' AND payload ->> 'endpoint' IS NULL $$;
