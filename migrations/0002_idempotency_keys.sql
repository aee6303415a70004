-- Idempotency-Key support for POST requests: the first response is stored and replayed for the
-- same key and body; a different body under the same key is a conflict. Rows expire.
CREATE TABLE idempotency_keys (
    user_id        uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    key            text NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    -- SHA-256 over method, path and body: what the key was first used for.
    fingerprint    bytea NOT NULL,
    status_code    integer NOT NULL,
    response_body  jsonb NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz NOT NULL,
    PRIMARY KEY (user_id, key)
);
CREATE INDEX idempotency_keys_expiry_idx ON idempotency_keys (expires_at);
