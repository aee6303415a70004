-- Named volumes of CONTAINER jobs: one row per (owner, name), written by the execution worker
-- when a job first mounts the volume. The Docker volume behind it is chronoverse-<user>-<name>,
-- labelled with the row's id: deleting the row (DELETE /volumes/{name}) lets the execution
-- worker remove the Docker volume, and a later row of the same name (a new id) never mounts the
-- old volume's data.
CREATE TABLE volumes (
    user_id           uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name              text NOT NULL CHECK (name ~ '^[a-z0-9][a-z0-9_.-]{0,62}$'),
    id                uuid NOT NULL DEFAULT gen_random_uuid() UNIQUE,
    created_at        timestamptz NOT NULL DEFAULT now(),
    last_used_at      timestamptz NOT NULL DEFAULT now(),
    size_bytes        bigint CHECK (size_bytes >= 0),
    size_measured_at  timestamptz,
    PRIMARY KEY (user_id, name)
);

-- Which volumes each job mounted: a volume is in use while a RUNNING job mounted it, whatever its
-- workflow's payload says now.
CREATE TABLE job_volumes (
    job_id   uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    user_id  uuid NOT NULL,
    name     text NOT NULL,
    PRIMARY KEY (job_id, name)
);
CREATE INDEX job_volumes_owner_idx ON job_volumes (user_id, name);
