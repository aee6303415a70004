"""Settings of the scheduling-worker."""

from __future__ import annotations

from pydantic import Field

from chronoverse.settings import HealthSettings, KafkaSettings, PostgresSettings, QuotaSettings


class Settings(PostgresSettings, KafkaSettings, HealthSettings, QuotaSettings):
    """Everything the scheduling-worker reads from the environment."""

    health_port: int = Field(
        9101, ge=0, le=65535, description="Port of /healthz, /readyz and /metrics."
    )
    poll_interval_s: float = Field(
        0.5,
        gt=0,
        le=1.0,
        description="Longest wait between scheduling passes; the next due slot and NOTIFY "
        "(a build, a manual run) wake the worker sooner.",
    )
    schedule_batch_size: int = Field(
        1000, ge=1, description="Due workflows claimed per transaction."
    )
    schedule_lanes: int = Field(
        2,
        ge=1,
        le=8,
        description="Batches of due workflows written at once while a backlog is due (each "
        "lane has its own connection): one batch is planned in Python while Postgres writes "
        "another. 1 writes one batch at a time.",
    )
    dispatch_batch_size: int = Field(
        2000, ge=1, description="Pending jobs published per transaction."
    )
    dispatch_max_in_flight_per_user: int = Field(
        200,
        ge=1,
        description="Jobs of one user that take an execution slot (CONTAINER jobs and HTTP-check "
        "HEARTBEATs) published and not yet finished (QUEUED or RUNNING) at once; the user's "
        "other ready ones wait PENDING, so one user's backlog never fills the `jobs` topic ahead "
        "of everyone else. Liveness HEARTBEATs take no slot (nothing runs: they are claimed by "
        "the hundred and done in milliseconds) and are never held back. Dispatch also takes "
        "ready jobs round-robin by user. Below CHRONOVERSE_MAX_ACTIVE_JOBS_PER_USER, or it never "
        "binds; about what one execution worker takes at once, so that a single user's jobs keep "
        "a worker busy. Raise it with the number of execution workers if one user's throughput "
        "matters more than how soon another user's job starts behind it.",
    )
    dispatch_recheck_s: float = Field(
        0.25,
        gt=0,
        le=5.0,
        description="While some user's ready jobs wait for room under "
        "CHRONOVERSE_DISPATCH_MAX_IN_FLIGHT_PER_USER, the longest time between two claims of "
        "ready jobs (each numbers every ready job by user); sooner when a quarter of a cap's "
        "worth of the waiting users' jobs finished (see CHRONOVERSE_DISPATCH_PROBE_S).",
    )
    dispatch_probe_s: float = Field(
        0.02,
        gt=0,
        le=1.0,
        description="While users' ready jobs wait under the in-flight cap, how often a cheap "
        "count of their jobs in flight checks whether enough finished to publish more.",
    )
    outbox_batch_size: int = Field(500, ge=1, description="Outbox events relayed per transaction.")
    publish_timeout_s: float = Field(
        30.0,
        gt=0,
        description="How long the broker may take to confirm a message before the "
        "batch counts as not delivered (it is sent again on the next pass).",
    )
    requeue_after_s: float = Field(
        120.0,
        gt=0,
        description="A QUEUED job no worker claimed this long after it was published is "
        "published again (its message may have been lost with a broker's data).",
    )
    outbox_retention_s: float = Field(
        86400.0, gt=0, description="Published outbox events are deleted after this long."
    )
    sweep_interval_s: float = Field(
        5.0, gt=0, description="How often to look for QUEUED jobs to publish again."
    )
    retention_job_days: float = Field(
        30.0,
        gt=0,
        description="Finished jobs (COMPLETED, FAILED, CANCELED) created more than this many "
        "days ago are deleted, with their log lines and history. Active jobs are never deleted.",
    )
    retention_jobs_per_workflow: int = Field(
        1000,
        ge=1,
        description="Each workflow keeps at most its newest this many jobs; older finished ones "
        "are deleted (with their log lines and history) whatever their age.",
    )
    retention_skips_days: float = Field(
        30.0,
        gt=0,
        description="Entries of the fire ledger's skipped slots older than this many days are "
        "deleted.",
    )
    retention_notification_days: float = Field(
        30.0,
        gt=0,
        description="Notifications, and finished webhook deliveries with their attempts, older "
        "than this many days are deleted.",
    )
    retention_skips_per_workflow: int = Field(
        1000,
        ge=1,
        description="Each workflow keeps at most its newest this many skipped-slot entries.",
    )
    retention_batch_size: int = Field(
        500,
        ge=1,
        description="Most jobs (or skipped-slot entries) one retention statement deletes; also "
        "how many jobs have their log lines and history deleted before the jobs themselves.",
    )
    retention_lines_per_batch: int = Field(
        10_000,
        ge=1,
        description="Most log lines (or history entries) of the jobs being deleted that one "
        "retention statement deletes. A job's lines go first, in such batches, then the job: "
        "deleting a job with all its lines at once could be a DELETE of millions of rows.",
    )
    retention_workflows_per_batch: int = Field(
        200,
        ge=1,
        description="Workflows one retention statement looks at; the pass walks every "
        "workflow in such windows.",
    )
    retention_interval_s: float = Field(
        60.0,
        gt=0,
        description="Pause between two retention passes over every workflow (each pass runs "
        "on its own thread, in short statements with a pause between them).",
    )
    retention_pause_s: float = Field(
        0.1,
        ge=0,
        description="Pause between two retention statements of a pass.",
    )
