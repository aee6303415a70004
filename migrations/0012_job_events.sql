-- Each job's history (docs/notifications.md, "Job history"): triggers on `jobs` append one
-- job_events row per transition, in the transaction of the transition. A trigger cannot be
-- bypassed: the scheduler's batch inserts, the execution worker's claims, outcomes and lease
-- recovery, the server's manual runs and terminations and the requeue sweeper all write through
-- it, with no code at any of those sites.
--
-- Every event's data is derived from the OLD and NEW rows (and, for a cancellation, from the
-- workflow's terminated_reason). The WHEN clauses keep the hot path cheap: an UPDATE that only
-- moves a live lease's lease_expires_at (a renewal) or the log bookkeeping calls no function.
--
-- Updates use a BEFORE trigger, so an event's time (clock_timestamp()) is the row's own, and
-- "had the lease expired?" is judged when the row changes, not at the end of a batch statement.
-- Inserts use an AFTER trigger: the job row must exist for job_events.job_id's foreign key.
-- Statement-level triggers over transition tables were measured too (bench/job_events_cost.py):
-- capturing every changed row, renewals included, cost more than these filtered row triggers.

CREATE FUNCTION chronoverse_job_created() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    INSERT INTO job_events (job_id, type, data)
    VALUES (NEW.id, 'created', jsonb_build_object(
        'trigger', NEW.trigger,
        'scheduled_at', NEW.scheduled_at,
        'status', NEW.status,
        'idempotency_key', NEW.idempotency_key));
    RETURN NULL;
END
$$;

CREATE FUNCTION chronoverse_job_transition() RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
    now_at timestamptz := clock_timestamp();
    reason text;
BEGIN
    -- Sent to the jobs topic: by the dispatcher (PENDING -> QUEUED), or again by the requeue
    -- sweeper because no worker claimed it (its message may have been lost).
    IF NEW.publish_count > OLD.publish_count THEN
        INSERT INTO job_events (job_id, type, at, data)
        VALUES (NEW.id, CASE WHEN OLD.status = 'QUEUED' THEN 'republished' ELSE 'published' END,
                now_at, jsonb_build_object(
                    'publish_count', NEW.publish_count,
                    'previously_published_at', OLD.published_at));
    END IF;

    -- The worker whose lease lapsed: the job leaves RUNNING after its lease had expired, whoever
    -- writes that (lease recovery, or the worker itself coming back late).
    IF OLD.status = 'RUNNING' AND NEW.status <> 'RUNNING' AND OLD.lease_expires_at < now_at THEN
        INSERT INTO job_events (job_id, type, at, data)
        VALUES (NEW.id, 'lease_lost', now_at, jsonb_build_object(
            'worker', OLD.lease_owner,
            'attempt', OLD.attempt,
            'lease_token', OLD.lease_token,
            'expired_at', OLD.lease_expires_at));
    END IF;

    IF OLD.status IN ('PENDING', 'QUEUED') AND NEW.status = 'RUNNING' THEN
        INSERT INTO job_events (job_id, type, at, data)
        VALUES (NEW.id, 'claimed', now_at, jsonb_build_object(
            'worker', NEW.lease_owner,
            'attempt', NEW.attempt,
            'lease_token', NEW.lease_token,
            'lease_expires_at', NEW.lease_expires_at,
            -- How long after its slot (or its manual request) the run started.
            'delay_s', round(extract(epoch FROM NEW.started_at - NEW.scheduled_at)::numeric, 3)));
    END IF;

    IF NEW.container_id IS NOT NULL AND NEW.container_id IS DISTINCT FROM OLD.container_id THEN
        INSERT INTO job_events (job_id, type, at, data)
        VALUES (NEW.id, 'container_started', now_at, jsonb_build_object(
            'container_id', NEW.container_id,
            'attempt', NEW.attempt));
    END IF;

    -- A renewal that came after the lease had expired, before anyone recovered the job.
    IF OLD.status = 'RUNNING' AND NEW.status = 'RUNNING' AND NEW.lease_token = OLD.lease_token
       AND OLD.lease_expires_at < now_at AND NEW.lease_expires_at > now_at THEN
        INSERT INTO job_events (job_id, type, at, data)
        VALUES (NEW.id, 'lease_recovered', now_at, jsonb_build_object(
            'worker', NEW.lease_owner,
            'attempt', NEW.attempt,
            'expired_at', OLD.lease_expires_at,
            'lease_expires_at', NEW.lease_expires_at));
    END IF;

    IF NEW.logs_incomplete AND NOT OLD.logs_incomplete THEN
        INSERT INTO job_events (job_id, type, at, data)
        VALUES (NEW.id, 'log_gap', now_at, jsonb_build_object('attempt', NEW.attempt));
    END IF;

    IF OLD.status = 'RUNNING' AND NEW.status = 'PENDING' THEN
        INSERT INTO job_events (job_id, type, at, data)
        VALUES (NEW.id, 'retry_scheduled', now_at, jsonb_build_object(
            'attempt', OLD.attempt,
            'reason', NEW.error,
            'retry_at', NEW.run_after,
            -- A stopping worker returned it: this attempt does not count against the retries.
            'handed_back', NEW.handed_back > OLD.handed_back));
    END IF;

    IF NEW.status IN ('COMPLETED', 'FAILED') AND NEW.status <> OLD.status THEN
        INSERT INTO job_events (job_id, type, at, data)
        VALUES (NEW.id, 'finished', now_at, jsonb_build_object(
            'status', NEW.status,
            'attempt', NEW.attempt,
            'exit_code', NEW.exit_code,
            'failure_kind', NEW.failure_kind,
            'error', NEW.error,
            'duration_s', round(extract(epoch FROM NEW.finished_at - NEW.started_at)::numeric, 3)));
    END IF;

    IF NEW.status = 'CANCELED' AND OLD.status <> 'CANCELED' THEN
        SELECT w.terminated_reason INTO reason FROM workflows AS w WHERE w.id = NEW.workflow_id;
        reason := coalesce(reason, NEW.error);
        INSERT INTO job_events (job_id, type, at, data)
        VALUES (NEW.id, 'canceled', now_at, jsonb_build_object(
            -- The reasons are written by services/server/store/workflows.py (the user's
            -- terminate and delete) and chronoverse/scheduling.py decide_termination.
            'by', CASE WHEN reason LIKE '% by the user' THEN 'user'
                       WHEN reason LIKE 'terminated after % consecutive failed jobs%'
                           THEN 'auto-termination'
                       ELSE 'system' END,
            'reason', reason,
            'previous_status', OLD.status,
            'attempt', NEW.attempt));
    END IF;

    RETURN NEW;
END
$$;

CREATE TRIGGER jobs_created AFTER INSERT ON jobs
    FOR EACH ROW EXECUTE FUNCTION chronoverse_job_created();

CREATE TRIGGER jobs_transition BEFORE UPDATE ON jobs
    FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status
          OR OLD.publish_count IS DISTINCT FROM NEW.publish_count
          OR OLD.container_id IS DISTINCT FROM NEW.container_id
          OR (NEW.logs_incomplete AND NOT OLD.logs_incomplete)
          OR (OLD.lease_expires_at < clock_timestamp()
              AND NEW.lease_expires_at > OLD.lease_expires_at))
    EXECUTE FUNCTION chronoverse_job_transition();
