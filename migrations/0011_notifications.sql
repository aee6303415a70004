-- Telling users what happened (docs/notifications.md): in-app notifications, webhooks on state
-- flips with their delivery outbox, each job's history, the per-workflow "retain logs" switch,
-- and the indexes behind analytics and log search.

-- Which notifications a user is shown: ALERTS (ALERT, ERROR, WARN), ALL, or NONE. Every
-- notification is stored; the preference applies when listing.
ALTER TABLE users ADD COLUMN notification_preference text NOT NULL DEFAULT 'ALERTS'
    CHECK (notification_preference IN ('ALERTS', 'ALL', 'NONE'));

-- false: live viewers still see the lines, but nothing is stored beyond what they need to resume.
ALTER TABLE workflows ADD COLUMN retain_logs boolean NOT NULL DEFAULT true;
-- The state that webhooks and notifications flip on: NEW (no finished job yet), PASSING (the
-- last finished job completed), FAILING (it failed). Only a change of state alerts.
ALTER TABLE workflows ADD COLUMN health text NOT NULL DEFAULT 'NEW'
    CHECK (health IN ('NEW', 'PASSING', 'FAILING'));

CREATE TABLE notifications (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id      uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind         text NOT NULL CHECK (kind IN ('ALERT', 'ERROR', 'WARN', 'SUCCESS', 'INFO')),
    -- What happened, e.g. job.failed, workflow.failing, build.completed.
    event        text NOT NULL,
    title        text NOT NULL,
    message      text NOT NULL,
    entity_type  text NOT NULL CHECK (entity_type IN ('WORKFLOW', 'JOB')),
    entity_id    uuid NOT NULL,
    action_url   text,
    -- One event gives one notification: e.g. 'job.failed:<job id>'; a repeated write is a no-op.
    dedup_key    text NOT NULL,
    read_at      timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_id, dedup_key)
);
-- Keyset pages of a user's notifications, newest first; and the unread ones.
CREATE INDEX notifications_user_page_idx ON notifications (user_id, created_at DESC, id DESC);
CREATE INDEX notifications_unread_idx ON notifications (user_id, created_at DESC, id DESC)
    WHERE read_at IS NULL;

CREATE TABLE webhooks (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id      uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- NULL: every workflow of the user.
    workflow_id  uuid REFERENCES workflows (id) ON DELETE CASCADE,
    url          text NOT NULL CHECK (length(url) BETWEEN 1 AND 2048),
    events       text[] NOT NULL CHECK (cardinality(events) >= 1),
    -- The Standard Webhooks signing secret ("whsec_..."), sealed like workflow secrets.
    secret       text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhooks_user_page_idx ON webhooks (user_id, created_at DESC, id DESC);

-- The webhook outbox: one row per (endpoint, event), written in the transaction of the flip that
-- caused it; the delivery loop sends it until it is DELIVERED or FAILED (attempts exhausted).
CREATE TABLE webhook_deliveries (
    -- Also the Standard Webhooks message id (the webhook-id header): stable across retries.
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    webhook_id       uuid NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event            text NOT NULL,
    payload          jsonb NOT NULL,
    -- One event gives one delivery per endpoint, e.g. 'workflow.failing:<job id>'.
    dedup_key        text NOT NULL,
    status           text NOT NULL DEFAULT 'PENDING'
        CHECK (status IN ('PENDING', 'DELIVERED', 'FAILED')),
    attempts         integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    -- A delivery loop that took the row holds it until then (a crashed one's rows come back).
    locked_until     timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz,
    UNIQUE (webhook_id, dedup_key)
);
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (next_attempt_at)
    WHERE status = 'PENDING';
CREATE INDEX webhook_deliveries_page_idx ON webhook_deliveries (webhook_id, created_at DESC, id DESC);

-- Each HTTP attempt of a delivery: what the receiver answered, or why there was no answer.
CREATE TABLE webhook_attempts (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id  uuid NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    attempt      integer NOT NULL CHECK (attempt >= 1),
    attempted_at timestamptz NOT NULL DEFAULT now(),
    status_code  integer,
    duration_ms  integer NOT NULL CHECK (duration_ms >= 0),
    error        text
);
CREATE INDEX webhook_attempts_delivery_idx ON webhook_attempts (delivery_id, id);

-- Each job's history, append-only: one row per transition, written in the transaction of the
-- transition (see 0012_job_events.sql for what writes it).
CREATE TABLE job_events (
    id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id  uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    type    text NOT NULL,
    at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    data    jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX job_events_job_idx ON job_events (job_id, id);
