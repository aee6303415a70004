-- Chronoverse initial schema. Statuses are text with CHECK constraints rather than Postgres enums,
-- so later migrations can add a value inside a transaction.

CREATE TABLE users (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email          text NOT NULL,
    password_hash  text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_email_key ON users (lower(email));

CREATE TABLE api_tokens (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id       uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- SHA-256 of the token; the token itself is shown once and never stored.
    token_hash    bytea NOT NULL UNIQUE,
    name          text NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_used_at  timestamptz,
    expires_at    timestamptz,
    revoked_at    timestamptz
);
CREATE INDEX api_tokens_user_idx ON api_tokens (user_id);

CREATE TABLE workflows (
    id                                    uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id                               uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name                                  text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    kind                                  text NOT NULL CHECK (kind IN ('HEARTBEAT', 'CONTAINER')),
    payload                               jsonb NOT NULL DEFAULT '{}'::jsonb,
    interval_minutes                      integer NOT NULL CHECK (interval_minutes BETWEEN 1 AND 10080),
    max_consecutive_job_failures_allowed  integer NOT NULL DEFAULT 3
        CHECK (max_consecutive_job_failures_allowed BETWEEN 1 AND 100),
    consecutive_job_failures_count        integer NOT NULL DEFAULT 0
        CHECK (consecutive_job_failures_count >= 0),
    build_status                          text NOT NULL DEFAULT 'QUEUED'
        CHECK (build_status IN ('QUEUED', 'STARTED', 'COMPLETED', 'FAILED', 'CANCELED')),
    build_error                           text,
    -- Increases whenever the definition changes; build events of an older generation are ignored.
    generation                            integer NOT NULL DEFAULT 1 CHECK (generation >= 1),
    next_run_at                           timestamptz,
    created_at                            timestamptz NOT NULL DEFAULT now(),
    updated_at                            timestamptz NOT NULL DEFAULT now(),
    terminated_at                         timestamptz,
    terminated_reason                     text,
    CHECK ((terminated_at IS NULL) = (terminated_reason IS NULL))
);
-- The scheduler's hot path: due, built, active workflows.
CREATE INDEX workflows_due_idx ON workflows (next_run_at)
    WHERE terminated_at IS NULL AND build_status = 'COMPLETED';
-- Keyset pagination of a user's workflows, newest first.
CREATE INDEX workflows_user_page_idx ON workflows (user_id, created_at DESC, id DESC);

CREATE TABLE jobs (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    workflow_id       uuid NOT NULL REFERENCES workflows (id) ON DELETE CASCADE,
    user_id           uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    trigger           text NOT NULL CHECK (trigger IN ('AUTOMATIC', 'MANUAL')),
    scheduled_at      timestamptz NOT NULL,
    idempotency_key   text,
    status            text NOT NULL DEFAULT 'PENDING'
        CHECK (status IN ('PENDING', 'QUEUED', 'RUNNING', 'COMPLETED', 'FAILED', 'CANCELED')),
    attempt           integer NOT NULL DEFAULT 0 CHECK (attempt >= 0),
    created_at        timestamptz NOT NULL DEFAULT now(),
    queued_at         timestamptz,
    started_at        timestamptz,
    finished_at       timestamptz,
    -- Lease with fencing: every write after the claim checks lease_token.
    lease_owner       text,
    lease_token       bigint NOT NULL DEFAULT 0,
    lease_expires_at  timestamptz,
    container_id      text,
    exit_code         integer,
    failure_kind      text CHECK (failure_kind IN ('USER', 'SYSTEM')),
    error             text,
    CHECK (failure_kind IS NULL OR status = 'FAILED')
);
-- One job row per nominal run of a schedule.
CREATE UNIQUE INDEX jobs_automatic_slot_key ON jobs (workflow_id, scheduled_at)
    WHERE trigger = 'AUTOMATIC';
-- Manual runs are de-duplicated by their idempotency key.
CREATE UNIQUE INDEX jobs_idempotency_key ON jobs (workflow_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX jobs_workflow_page_idx ON jobs (workflow_id, created_at DESC, id DESC);
-- Sweepers look only at unfinished jobs.
CREATE INDEX jobs_active_idx ON jobs (status, created_at)
    WHERE status IN ('PENDING', 'QUEUED', 'RUNNING');

CREATE TABLE job_logs (
    job_id  uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    -- Assigned by the execution worker, unique across both streams of a job.
    seq     bigint NOT NULL CHECK (seq >= 0),
    stream  text NOT NULL CHECK (stream IN ('stdout', 'stderr')),
    ts      timestamptz NOT NULL,
    line    text NOT NULL,
    PRIMARY KEY (job_id, seq)
);

-- Events that must reach Kafka after the transaction that caused them commits.
CREATE TABLE outbox (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    topic         text NOT NULL,
    key           text NOT NULL,
    payload       jsonb NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    published_at  timestamptz
);
CREATE INDEX outbox_unpublished_idx ON outbox (id) WHERE published_at IS NULL;
