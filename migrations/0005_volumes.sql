-- Named volumes of CONTAINER jobs: one row per (owner, name), written by the execution worker
-- when a job first uses the volume. The Docker volume behind it is chronoverse-<user>-<name>;
-- deleting the row (DELETE /volumes/{name}) lets the execution worker remove the Docker volume.
CREATE TABLE volumes (
    user_id           uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name              text NOT NULL CHECK (name ~ '^[a-z0-9][a-z0-9_.-]{0,62}$'),
    created_at        timestamptz NOT NULL DEFAULT now(),
    last_used_at      timestamptz NOT NULL DEFAULT now(),
    size_bytes        bigint CHECK (size_bytes >= 0),
    size_measured_at  timestamptz,
    PRIMARY KEY (user_id, name)
);
