"""Scenario 0: the floor. What the infrastructure allows on this machine, in the same run.

The least pipeline that does what Chronoverse does for a job, in one process with batches, on
the same Postgres and broker, with a table of its own (`floor_jobs`: a primary key and nothing
else) and topics of its own. No scheduling decision, no ledger, no lease, no retry: only the
writes and the messages. Chronoverse's scheduler and end-to-end throughput are reported as
ratios to it (:func:`compare`).

- **Schedule and publish**: batches of 1,000 jobs, each one INSERT (binary arrays through
  `unnest`, as the scheduler sends them), one `job.ready` message per job produced with the
  services' producer (idempotent, `acks=all`) and flushed until the broker acknowledged every
  one, then COMMIT. Jobs/s from the first INSERT to the last COMMIT.
- **End to end**: the same, while a consumer on a thread of the same process (the services'
  consumer settings) takes messages in batches, claims each batch (`UPDATE … SET status =
  'RUNNING' WHERE id = ANY(…) AND status = 'QUEUED'`), completes it in a second statement and
  commits the offsets. Jobs/s from the first INSERT until every job is COMPLETED.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import confluent_kafka

from bench.context import FETCH_WAIT_MAX_MS, BenchContext
from bench.database import QUERIES, connect
from bench.environment import BenchError
from bench.results import Compare, Metric, ScenarioResult, Subject, Target
from bench.scenarios import heartbeat, scheduler
from chronoverse.domain import Topic
from chronoverse.jobs import JobMessage, decode_job_message
from chronoverse.kafka.config import consumer_config
from chronoverse.kafka.producer import OutgoingMessage, Producer
from chronoverse.postgres import Conn
from chronoverse.settings import KafkaSettings

NAME = "floor"
JOBS = 20_000
BATCH = 1_000
REPEATS = 5
SCHEDULE_AND_PUBLISH = "floor: schedule and publish"
END_TO_END = "floor: end to end"
BASELINE_NAME = "floor"
ASSIGN_TIMEOUT_S = 60.0
DRAIN_TIMEOUT_S = 300.0
# Chronoverse's throughput is reported against the floor's; half of it is the goal (issue 19).
FLOOR_TARGET = Target(compare=Compare.AT_LEAST, value=0.5, subject=Subject.RATIO)


def run(ctx: BenchContext) -> ScenarioResult:
    count = ctx.scaled(JOBS)
    repeats = ctx.repeats(REPEATS)
    database_url = ctx.infra.create_database()
    label = f"floor{uuid.uuid4().hex[:8]}"
    # Two sets of topics, so the end-to-end consumer never sees the first measurement's messages.
    publish_settings = _topics(ctx, f"{label}.publish.")
    e2e_settings = _topics(ctx, f"{label}.e2e.")
    publish: list[float] = []
    end_to_end: list[float] = []
    with connect(database_url) as conn, connect(database_url) as worker_conn:
        conn.execute(QUERIES.floor_create)
        producer = Producer(publish_settings, client_id="bench-floor")
        consumer = _consumer(e2e_settings)
        try:
            # Warm-up, untimed: the producer's metadata and connections, the consumer's fetches.
            _schedule_and_publish(conn, producer, publish_settings, BATCH)
            conn.execute(QUERIES.floor_reset)
            _end_to_end(conn, worker_conn, producer, consumer, e2e_settings, BATCH)
            for repeat in range(repeats):
                conn.execute(QUERIES.floor_reset)
                publish.append(_schedule_and_publish(conn, producer, publish_settings, count))
                conn.execute(QUERIES.floor_reset)
                end_to_end.append(
                    _end_to_end(conn, worker_conn, producer, consumer, e2e_settings, count)
                )
                ctx.progress(
                    f"{NAME} {repeat + 1}/{repeats}: schedule and publish "
                    f"{publish[-1]:,.0f} jobs/s, end to end {end_to_end[-1]:,.0f} jobs/s"
                )
        finally:
            consumer.close()
            producer.close()
    return ScenarioResult(
        name=NAME,
        title="The floor: a minimal pipeline on the same infrastructure",
        setup=(
            f"{count:,} jobs in batches of {BATCH:,}, in one process, on the same Postgres and "
            "broker: a table with a primary key only, topics of its own. Schedule and publish: "
            "per batch one INSERT (binary arrays via unnest), one job.ready message per job "
            "produced with the services' producer (idempotent, acks=all) and flushed until all "
            "are acknowledged, then COMMIT; jobs/s from the first INSERT to the last COMMIT. "
            "End to end: the same, and a consumer thread (the services' consumer settings, "
            f"fetch.wait.max.ms {FETCH_WAIT_MAX_MS}) that takes up to {BATCH:,} messages at a "
            "time, claims them (QUEUED to RUNNING), completes them (RUNNING to COMPLETED) in a "
            "second statement and commits the offsets; jobs/s until every job is COMPLETED. "
            f"{repeats} repeats of each, interleaved, after an untimed batch of each."
        ),
        config={
            "jobs": count,
            "batch": BATCH,
            "repeats": repeats,
            "kafka_fetch_wait_max_ms": int(FETCH_WAIT_MAX_MS),
        },
        metrics=[
            Metric(
                scenario=NAME,
                name=SCHEDULE_AND_PUBLISH,
                unit="jobs/s",
                samples=(),
                baseline_samples=tuple(publish),
                baseline_name=BASELINE_NAME,
            ),
            Metric(
                scenario=NAME,
                name=END_TO_END,
                unit="jobs/s",
                samples=(),
                baseline_samples=tuple(end_to_end),
                baseline_name=BASELINE_NAME,
            ),
        ],
    )


def compare(results: list[ScenarioResult]) -> None:
    """Add the rows `scheduler` and `heartbeat` against the floor, for the scenarios that ran."""
    by_name = {r.name: r for r in results}
    floor = by_name.get(NAME)
    if floor is None:
        return
    floors = {m.name: m.baseline_samples for m in floor.metrics}
    for scenario, floor_metric, name in (
        (scheduler.NAME, SCHEDULE_AND_PUBLISH, "jobs/s against the floor (1 scheduling worker)"),
        (heartbeat.NAME, END_TO_END, "jobs/s against the floor"),
    ):
        ours = by_name.get(scenario)
        if ours is None or not ours.metrics or not floors.get(floor_metric):
            continue
        # Each scenario's first metric is its headline throughput.
        throughput = ours.metrics[0]
        ours.metrics.insert(
            1,
            Metric(
                scenario=scenario,
                name=name,
                unit=throughput.unit,
                samples=throughput.samples,
                baseline_samples=floors[floor_metric],
                baseline_name=BASELINE_NAME,
                target=FLOOR_TARGET,
            ),
        )


def _topics(ctx: BenchContext, prefix: str) -> KafkaSettings:
    """Chronoverse's topics under ``prefix`` (dropped at the end), and the settings the bench's
    services would have on them."""
    ctx.infra.create_topics(prefix)
    return KafkaSettings.from_environ(
        {
            **ctx.infra.environ,
            "CHRONOVERSE_KAFKA_TOPIC_PREFIX": prefix,
            "CHRONOVERSE_KAFKA_FETCH_WAIT_MAX_MS": FETCH_WAIT_MAX_MS,
        }
    )


def _consumer(settings: KafkaSettings) -> confluent_kafka.Consumer:
    """A consumer of the jobs topic, subscribed and holding its partitions (before any timing)."""
    consumer = confluent_kafka.Consumer(
        consumer_config(settings, client_id="bench-floor", group_id=settings.group("bench-floor"))
    )
    consumer.subscribe([settings.topic(Topic.JOBS)])
    deadline = time.monotonic() + ASSIGN_TIMEOUT_S
    while not consumer.assignment():
        if time.monotonic() > deadline:
            consumer.close()
            raise BenchError(f"the floor's consumer got no partition in {ASSIGN_TIMEOUT_S:.0f}s")
        consumer.poll(0.1)
    return consumer


def _publish_batches(conn: Conn, producer: Producer, settings: KafkaSettings, count: int) -> float:
    """Insert, publish and commit ``count`` jobs in batches; the time of the last COMMIT."""
    topic = settings.topic(Topic.JOBS)
    slot = datetime.now(UTC)
    for first in range(0, count, BATCH):
        size = min(BATCH, count - first)
        ids = [uuid.uuid4() for _ in range(size)]
        workflow_ids = [uuid.uuid4() for _ in range(size)]
        with conn.transaction():
            conn.execute(
                QUERIES.floor_insert,
                {"ids": ids, "workflow_ids": workflow_ids, "slots": [slot] * size},
            )
            producer.publish_all(
                OutgoingMessage(
                    topic=topic,
                    key=str(workflow_id),
                    value=JobMessage(job_id=job_id, workflow_id=workflow_id).encode(),
                )
                for job_id, workflow_id in zip(ids, workflow_ids, strict=True)
            )
    return time.monotonic()


def _schedule_and_publish(
    conn: Conn, producer: Producer, settings: KafkaSettings, count: int
) -> float:
    started = time.monotonic()
    finished = _publish_batches(conn, producer, settings, count)
    _check(conn, count, completed=0)
    return count / (finished - started)


@dataclass(kw_only=True)
class _Worker:
    """The consumer thread's outcome: when the last job completed, or what went wrong."""

    finished_at: float | None = None
    error: BaseException | None = None


def _end_to_end(
    conn: Conn,
    worker_conn: Conn,
    producer: Producer,
    consumer: confluent_kafka.Consumer,
    settings: KafkaSettings,
    count: int,
) -> float:
    outcome = _Worker()
    stop = threading.Event()
    thread = threading.Thread(
        target=_work,
        args=(consumer, worker_conn, count, stop, outcome),
        name="floor-consumer",
        daemon=True,
    )
    started = time.monotonic()
    thread.start()
    try:
        _publish_batches(conn, producer, settings, count)
        thread.join(DRAIN_TIMEOUT_S)
    finally:
        stop.set()
        thread.join()
    if outcome.error is not None:
        raise BenchError(f"the floor's consumer failed: {outcome.error}") from outcome.error
    if outcome.finished_at is None:
        raise BenchError(f"the floor's {count} jobs did not complete in {DRAIN_TIMEOUT_S:.0f}s")
    _check(conn, count, completed=count)
    return count / (outcome.finished_at - started)


def _work(
    consumer: confluent_kafka.Consumer,
    conn: Conn,
    count: int,
    stop: threading.Event,
    outcome: _Worker,
) -> None:
    """Consume, claim, complete and commit until ``count`` jobs completed (or ``stop``)."""
    try:
        completed = 0
        # A message can arrive before its batch's COMMIT (the producer flushes first): its job is
        # not visible yet, so it is claimed with a later batch. (Its offset is committed with its
        # own batch: the floor does not survive a crash, and need not.)
        unclaimed: list[uuid.UUID] = []
        while completed < count and not stop.is_set():
            messages = consumer.consume(BATCH, timeout=0)
            if not messages:
                first = consumer.poll(0.01 if unclaimed else 0.1)
                messages = [first] if first is not None else []
            offsets: dict[tuple[str, int], int] = {}
            ids = list(unclaimed)
            for message in messages:
                error = message.error()
                if error is not None:
                    raise BenchError(f"consume failed: {error}")
                ids.append(decode_job_message(message.key(), message.value()).job_id)
                tp = (message.topic() or "", message.partition() or 0)
                offsets[tp] = max(offsets.get(tp, 0), (message.offset() or 0) + 1)
            if not ids:
                continue
            claimed = [row["id"] for row in conn.execute(QUERIES.floor_claim, {"ids": ids})]
            unclaimed = list(set(ids) - set(claimed))
            if claimed:
                cursor = conn.execute(QUERIES.floor_complete, {"ids": claimed})
                completed += cursor.rowcount
            if offsets:
                consumer.commit(
                    offsets=[
                        confluent_kafka.TopicPartition(t, p, o) for (t, p), o in offsets.items()
                    ],
                    asynchronous=True,
                )
        if completed >= count:
            outcome.finished_at = time.monotonic()
    except Exception as exc:  # reported by the caller, with the repeat
        outcome.error = exc


def _check(conn: Conn, count: int, *, completed: int) -> None:
    row = conn.execute(QUERIES.floor_counts).fetchone()
    assert row is not None
    if row["n"] != count or row["completed"] != completed:
        raise BenchError(
            f"expected {count} floor jobs, {completed} COMPLETED; found {row['n']}, "
            f"{row['completed']}"
        )
