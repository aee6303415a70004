"""The scheduling loop: create due jobs, publish pending ones, relay the outbox.

Each step is one short transaction that claims its rows with ``FOR UPDATE SKIP LOCKED``, so
several scheduling workers share the work without waiting on each other and never both handle a
row. A due workflow's jobs are written once: inserted QUEUED in the transaction that advances the
workflow, and published right after it commits, so the execution worker always finds the row it
is told about. A job that must wait (its owner at the in-flight cap) is inserted PENDING and the
dispatcher publishes it later, inside the transaction that marks it QUEUED. Whatever a crash or a
broker outage leaves unsent (PENDING, or QUEUED without a message) is sent again: by the next pass,
or by the requeue sweeper. Duplicates are harmless, because the execution worker claims a job only
once.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
from prometheus_client import Counter, Histogram

from chronoverse import lifecycle
from chronoverse.domain import Topic, catchup_of, dst_of, schedule_of, utcnow
from chronoverse.errors import ChronoverseError, PublishError
from chronoverse.jobs import JobMessage
from chronoverse.kafka.admin import ensure_topics
from chronoverse.kafka.producer import OutgoingMessage, Producer
from chronoverse.messages import encode
from chronoverse.postgres import Pool
from chronoverse.scheduling import (
    DueWorkflow,
    FireDecision,
    PlannedRun,
    UserLoad,
    apply_active_quota,
    idle_wait_s,
    plan_fire,
    plan_runs,
    users_to_lock,
    users_within,
)
from chronoverse.sql import Queries
from services.scheduling_worker.fairness import HeldBack
from services.scheduling_worker.settings import Settings

logger = logging.getLogger(__name__)
QUERIES = Queries.load(Path(__file__).with_name("queries.sql"))

JOBS_CREATED = Counter("chronoverse_jobs_created", "Automatic jobs created.")
SKIPPED = Counter("chronoverse_slots_skipped", "Schedule slots skipped, by reason.", ["reason"])
PUBLISHED = Counter(
    "chronoverse_jobs_published", "Job messages published, by kind of send.", ["send"]
)
OUTBOX_RELAYED = Counter("chronoverse_outbox_relayed", "Outbox events relayed to Kafka.")
DISPATCH_LAG = Histogram(
    "chronoverse_dispatch_lag_seconds",
    "From a job's scheduled time to the broker confirming its message, by trigger.",
    ["trigger"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
PASS_ERRORS = Counter("chronoverse_scheduler_pass_errors", "Scheduling passes that failed.")
DISPATCH_CLAIMS = Counter(
    "chronoverse_dispatch_claims",
    "Claims of ready PENDING jobs run (each numbers every ready job by user).",
)

Clock = Callable[[], datetime]

# Longest a due workflow outside the one-statement common case waits behind a backlog of it.
SLOW_PATH_EVERY_S = 1.0


class Scheduler:
    def __init__(
        self,
        settings: Settings,
        pool: Pool,
        producer: Producer,
        *,
        clock: Clock = utcnow,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._pool = pool
        self._producer = producer
        self._clock = clock
        self._monotonic = monotonic
        self._last_sweep = 0.0
        self._last_planned = 0.0  # when _fire_due last ran
        # Ready jobs the last dispatch left PENDING (users at the in-flight cap), if any.
        self._held: HeldBack | None = None
        # A NOTIFY came (a manual run, a build): claim at once even while users are held back.
        self._woken = False
        # Messages of jobs committed QUEUED that the broker has not acknowledged yet.
        self._unsent: list[OutgoingMessage] = []
        self._unsent_lock = threading.Lock()
        # Set while due workflows fill whole batches: the extra lanes write batches too.
        self._backlog = threading.Event()
        # A pass (of any lane) left new jobs PENDING (owners at the in-flight cap, or the broker
        # refusing messages): dispatch them. Swapped under the lock: lanes set it concurrently.
        self._pending_created = False
        self._pending_lock = threading.Lock()

    # --- one pass ---------------------------------------------------------------------------------

    def run_once(self) -> bool:
        """Run every step once; True when a step filled its batch (more work is waiting)."""
        claimed = self.schedule_due()
        busy = claimed >= self._settings.schedule_batch_size
        if busy:
            self._backlog.set()
        with self._pending_lock:
            pending_created, self._pending_created = self._pending_created, False
        if pending_created or self._dispatch_due():
            busy |= self.dispatch_pending() >= self._settings.dispatch_batch_size
        busy |= self.relay_outbox() >= self._settings.outbox_batch_size
        if time.monotonic() - self._last_sweep >= self._settings.sweep_interval_s:
            self.requeue_stale()
            self.prune()
            self._last_sweep = time.monotonic()
        return busy

    def _dispatch_due(self) -> bool:
        """Whether to claim ready jobs now: always, unless users are held back at the cap and
        too few of their jobs finished since (fairness.py)."""
        held, woken = self._held, self._woken
        self._woken = False
        if held is None or woken:
            return True
        if held.recheck_due(self._monotonic(), self._settings.dispatch_recheck_s):
            return True
        users = {"user_ids": list(held.user_ids)}
        with self._pool.connection() as conn:
            row = conn.execute(QUERIES.count_in_flight, users).fetchone()
        assert row is not None
        return held.has_room(row["n"], self._settings.dispatch_max_in_flight_per_user)

    def schedule_due(self) -> int:
        """Create jobs for due workflows, advance their schedules; return workflows claimed.

        Jobs are written once: those that may run now are inserted QUEUED and their messages
        sent right after the commit (the execution worker always finds the row); the rest wait
        PENDING for :meth:`dispatch_pending`. A crash between the commit and the send leaves
        QUEUED jobs without a message, which :meth:`requeue_stale` publishes again.
        """
        if not self._send_unsent():
            # The broker refuses messages: keep scheduling (the schedules advance, the ledger is
            # written), with every new job PENDING for the dispatcher, as before issue 19.
            return self._fire_due(publish=False)
        beats = self._fire_due_beats()
        # While the common case fills whole batches, every other due workflow (planned in
        # Python) still gets a pass at least every SLOW_PATH_EVERY_S, so it never starves.
        if beats >= self._settings.schedule_batch_size:
            if self._monotonic() - self._last_planned < SLOW_PATH_EVERY_S:
                return beats
        self._last_planned = self._monotonic()
        return beats + self._fire_due()

    def _fire_due_beats(self) -> int:
        """The common case (claim_due_beats): its plan is known without Python, so one statement
        writes the batch (write_beats); return the workflows it advanced. A user whose batch
        would pass the active-jobs quota gets none of it here: those workflows stay due for the
        planner, which records QUOTA skips."""
        quota = self._settings.max_active_jobs_per_user
        with self._pool.connection() as conn:
            rows = conn.execute(
                QUERIES.claim_due_beats,
                {"now": self._clock(), "limit": self._settings.schedule_batch_size},
                prepare=False,  # planned for each batch's values
            ).fetchall()
            if not rows:
                return 0
            new = collections.Counter(row["user_id"] for row in rows)
            active = self._active(conn, list(new))
            tight = users_to_lock(new, active, limit=quota, headroom=self._headroom())
            held = self._lock_users(conn, tight) if tight else set()
            if tight:
                active.update(self._active(conn, [u for u in tight if u not in held]))
            room = users_within(new, active, limit=quota) - held
            fire = [row for row in rows if row["user_id"] in room]
            if not fire:
                return 0
            written = conn.execute(
                QUERIES.write_beats,
                {
                    "ids": [row["id"] for row in fire],
                    "user_ids": [row["user_id"] for row in fire],
                    "slots": [row["next_run_at"] for row in fire],
                    "minutes": [row["interval_minutes"] for row in fire],
                },
            ).fetchall()
        JOBS_CREATED.inc(len(written))
        self._send_queued([(r["id"], r["workflow_id"], r["scheduled_at"]) for r in written])
        # The workflows advanced, not those claimed: a batch whose owners had no room is left to
        # the planner in this same pass, instead of being claimed again and again.
        return len(fire)

    def _fire_due(self, *, publish: bool = True) -> int:
        """Every other due workflow, planned in Python (plan_fire); return workflows claimed.
        Without ``publish`` every job is inserted PENDING (the broker is refusing messages)."""
        now = self._clock()
        with self._pool.connection() as conn:
            rows = conn.execute(
                QUERIES.claim_due_workflows,
                {"now": now, "limit": self._settings.schedule_batch_size},
            ).fetchall()
            if not rows:
                return 0
            decisions = [plan_fire(_due(row), now) for row in rows]
            takes_slot = {row["id"]: row["takes_slot"] for row in rows}
            decisions, loads = self._within_limits(conn, decisions, takes_slot)
            runs = plan_runs(
                decisions,
                takes_slot,
                loads,
                max_in_flight=self._settings.dispatch_max_in_flight_per_user,
            )
            if not publish:
                runs = [replace(run, publish_now=False) for run in runs]
            created = self._write_decisions(conn, decisions, runs)
        queued = [job for job in created if job.queued]
        if len(queued) < len(created):
            with self._pending_lock:
                self._pending_created = True
        if queued:
            self._send_queued([(job.id, job.workflow_id, job.scheduled_at) for job in queued])
        return len(rows)

    def _send_queued(self, jobs: list[tuple[UUID, UUID, datetime]]) -> None:
        """Publish committed QUEUED jobs (id, workflow, slot); kept for the next pass when the
        broker refuses them."""
        messages = [self._job_message(job_id, workflow_id) for job_id, workflow_id, _ in jobs]
        try:
            self._publish(messages)
        except PublishError:
            with self._unsent_lock:
                self._unsent.extend(messages)
            raise
        published = self._clock()
        lag = DISPATCH_LAG.labels("AUTOMATIC")
        for _, _, slot in jobs:
            lag.observe(max(0.0, (published - slot).total_seconds()))
        PUBLISHED.labels("first").inc(len(jobs))

    def idle_wait_s(self) -> float:
        """How long to sleep after a pass that found nothing more to do."""
        longest = self._settings.poll_interval_s
        if self._held is not None:
            longest = min(longest, self._settings.dispatch_probe_s)
        with self._pool.connection() as conn:
            row = conn.execute(QUERIES.next_due_at).fetchone()
        return idle_wait_s(row["at"] if row else None, self._clock(), longest_s=longest)

    def _send_unsent(self) -> bool:
        """Send the messages of jobs committed QUEUED whose send failed (a broker outage);
        False while the broker still refuses them (they are kept for the next pass)."""
        with self._unsent_lock:
            if not self._unsent:
                return True
            try:
                self._publish(self._unsent)
            except PublishError as exc:
                logger.warning(
                    "%d job messages still unsent: %s",
                    len(self._unsent),
                    exc,
                    extra={"action": "jobs_unsent", "count": len(self._unsent)},
                )
                return False
            self._unsent = []
            return True

    def _within_limits(
        self,
        conn: psycopg.Connection[dict[str, Any]],
        decisions: list[FireDecision],
        takes_slot: dict[UUID, bool],
    ) -> tuple[list[FireDecision], dict[UUID, UserLoad]]:
        """The decisions with the slots past each owner's active-jobs quota as QUOTA skips, and
        the owners' loads for the in-flight cap (only of owners whose jobs take a slot).

        Owners this process's lanes could take past the quota or the cap by writing at the same
        time (users_to_lock) are locked and counted again first; the decisions of an owner
        another transaction holds are left for a later pass (their workflows stay due).
        """
        new = collections.Counter(d.user_id for d in decisions for _ in d.run_slots)
        if not new:
            return decisions, {}
        quota = self._settings.max_active_jobs_per_user
        cap = self._settings.dispatch_max_in_flight_per_user
        headroom = self._headroom()
        slot_new = collections.Counter(
            d.user_id for d in decisions for _ in d.run_slots if takes_slot[d.workflow_id]
        )
        active = self._active(conn, list(new))
        loads = self._slot_loads(conn, list(slot_new)) if slot_new else {}
        in_flight = {user: load.in_flight for user, load in loads.items()}
        tight = set(users_to_lock(new, active, limit=quota, headroom=headroom))
        tight |= set(users_to_lock(slot_new, in_flight, limit=cap, headroom=headroom))
        if tight:
            held = self._lock_users(conn, sorted(tight))
            if held:
                decisions = [d for d in decisions if d.user_id not in held]
            locked = [user for user in tight if user not in held]
            active.update(self._active(conn, locked))
            if slot_new:
                loads.update(self._slot_loads(conn, [u for u in locked if u in slot_new]))
        return apply_active_quota(decisions, active, limit=quota), loads

    def _headroom(self) -> int:
        """Jobs the other lanes of this process may be writing, uncommitted, at the same time."""
        return (self._settings.schedule_lanes - 1) * self._settings.schedule_batch_size

    def _active(
        self, conn: psycopg.Connection[dict[str, Any]], users: list[UUID]
    ) -> dict[UUID, int]:
        """Each of these users' jobs PENDING, QUEUED or RUNNING (the active-jobs quota)."""
        rows = conn.execute(QUERIES.count_active_jobs_by_user, {"user_ids": users}).fetchall()
        return {row["user_id"]: row["n"] for row in rows}

    def _slot_loads(
        self, conn: psycopg.Connection[dict[str, Any]], users: list[UUID]
    ) -> dict[UUID, UserLoad]:
        """Each of these users' slot-taking jobs in flight and waiting (the in-flight cap)."""
        rows = conn.execute(QUERIES.slot_loads, {"user_ids": users}).fetchall()
        return {
            row["user_id"]: UserLoad(in_flight=row["in_flight"], waiting=row["waiting"])
            for row in rows
        }

    def _lock_users(self, conn: psycopg.Connection[dict[str, Any]], users: list[UUID]) -> set[UUID]:
        """Lock these users' rows for this transaction, in id order; return those another
        transaction holds (skipped, not waited for: no lane ever blocks on another)."""
        rows = conn.execute(QUERIES.lock_users, {"ids": sorted(users)}).fetchall()
        return set(users) - {row["id"] for row in rows}

    def _write_decisions(
        self,
        conn: psycopg.Connection[dict[str, Any]],
        decisions: list[FireDecision],
        runs: list[PlannedRun],
    ) -> list[lifecycle.CreatedJob]:
        created, skips = lifecycle.record_fires(conn, decisions, runs)
        JOBS_CREATED.inc(len(created))
        for workflow_id, skip in skips:
            SKIPPED.labels(skip.reason.value).inc(skip.slots)
            logger.info(
                "workflow %s skipped %d slot(s): %s",
                workflow_id,
                skip.slots,
                skip.detail,
                extra={
                    "action": "slots_skipped",
                    "workflow_id": str(workflow_id),
                    "reason": skip.reason.value,
                },
            )
        return created

    def dispatch_pending(self) -> int:
        """Publish PENDING jobs that may run now, fairly between users, then mark them QUEUED;
        return how many."""
        limit = self._settings.dispatch_batch_size
        DISPATCH_CLAIMS.inc()
        with self._pool.connection() as conn:
            rows = conn.execute(
                QUERIES.claim_pending_jobs,
                {"limit": limit, "max_in_flight": self._settings.dispatch_max_in_flight_per_user},
            ).fetchall()
            if rows:
                self._publish([self._job_message(r["id"], r["workflow_id"]) for r in rows])
                conn.execute(QUERIES.mark_queued, {"ids": [row["id"] for row in rows]})
        self._held = None
        if len(rows) < limit:
            with self._pool.connection() as conn:
                waiting = conn.execute(QUERIES.held_back_users).fetchall()
            if waiting:
                self._held = HeldBack(
                    user_ids=tuple(row["user_id"] for row in waiting),
                    in_flight=sum(row["in_flight"] for row in waiting),
                    at=self._monotonic(),
                )
        if not rows:
            return 0
        published = self._clock()
        for row in rows:
            DISPATCH_LAG.labels(row["trigger"]).observe(
                max(0.0, (published - row["scheduled_at"]).total_seconds())
            )
        PUBLISHED.labels("first").inc(len(rows))
        return len(rows)

    def requeue_stale(self) -> int:
        """Publish again QUEUED jobs nobody claimed long after publication."""
        with self._pool.connection() as conn:
            rows = conn.execute(
                QUERIES.claim_stale_queued_jobs,
                {
                    "after_s": self._settings.requeue_after_s,
                    "limit": self._settings.dispatch_batch_size,
                },
            ).fetchall()
            if not rows:
                return 0
            self._publish([self._job_message(r["id"], r["workflow_id"]) for r in rows])
            conn.execute(QUERIES.mark_republished, {"ids": [row["id"] for row in rows]})
        PUBLISHED.labels("again").inc(len(rows))
        logger.warning(
            "published %d unclaimed QUEUED jobs again",
            len(rows),
            extra={"action": "jobs_republished", "count": len(rows)},
        )
        return len(rows)

    def prune(self) -> None:
        """Delete published outbox events past retention and expired idempotency keys."""
        with self._pool.connection() as conn:
            conn.execute(QUERIES.prune_outbox, {"keep_s": self._settings.outbox_retention_s})
            conn.execute(QUERIES.prune_idempotency_keys)

    def relay_outbox(self) -> int:
        """Send committed outbox events to Kafka in order, then mark them published."""
        with self._pool.connection() as conn:
            rows = conn.execute(
                QUERIES.claim_outbox, {"limit": self._settings.outbox_batch_size}
            ).fetchall()
            if not rows:
                return 0
            self._publish(
                [
                    OutgoingMessage(
                        topic=self._settings.kafka_topic_prefix + row["topic"],
                        key=row["key"],
                        value=encode(row["payload"]),
                    )
                    for row in rows
                ]
            )
            conn.execute(QUERIES.mark_outbox_published, {"ids": [row["id"] for row in rows]})
        OUTBOX_RELAYED.inc(len(rows))
        return len(rows)

    def _publish(self, messages: list[OutgoingMessage]) -> None:
        self._producer.publish_all(messages)

    # --- the loop -------------------------------------------------------------------------------

    def lane(self, stop: threading.Event) -> None:
        """An extra lane: while a backlog of due workflows lasts, claim and write whole batches
        beside the main loop, on a connection of its own (``SKIP LOCKED`` keeps the batches
        apart). A scheduling pass is a chain of waits on Postgres and stretches of Python
        (planning, encoding); with two lanes one batch's Python runs while Postgres writes
        another's, on the other core."""
        full = self._settings.schedule_batch_size
        while not stop.is_set():
            if not self._backlog.wait(timeout=self._settings.poll_interval_s):
                continue
            try:
                while not stop.is_set() and self.schedule_due() >= full:
                    pass
            except Exception as exc:  # a lane never dies: the main loop handles recovery
                PASS_ERRORS.inc()
                logger.warning(
                    "scheduling lane pass failed: %s",
                    exc,
                    exc_info=not isinstance(exc, (psycopg.Error, ChronoverseError)),
                    extra={"action": "scheduler_pass_failed"},
                )
                stop.wait(0.5)
            self._backlog.clear()

    def run(self, stop: threading.Event) -> None:
        lanes = [
            threading.Thread(target=self.lane, args=(stop,), name=f"schedule-lane-{n}", daemon=True)
            for n in range(1, self._settings.schedule_lanes)
        ]
        for thread in lanes:
            thread.start()
        try:
            self._loop(stop)
        finally:
            for thread in lanes:
                thread.join(timeout=10)
            # Last, once no lane can add to them: what the broker refused (else the requeue
            # sweeper of another scheduling worker sends them after CHRONOVERSE_REQUEUE_AFTER_S).
            if not self._send_unsent():
                logger.warning(
                    "unsent job messages left at shutdown", extra={"action": "jobs_unsent"}
                )

    def _loop(self, stop: threading.Event) -> None:
        listener: psycopg.Connection[Any] | None = None
        backoff = 0.5
        while not stop.is_set():
            try:
                if listener is None or listener.closed:
                    listener = psycopg.connect(self._settings.database_url, autocommit=True)
                    lifecycle.listen_for_wakeups(listener)
                busy = self.run_once()
                backoff = 0.5
                if not busy:
                    # Sleep until NOTIFY (a build completed, a manual run), the next slot or
                    # the poll interval; while ready jobs wait for room under the in-flight cap,
                    # at most until the next probe of their users' jobs in flight.
                    timeout = self.idle_wait_s()
                    for _ in listener.notifies(timeout=timeout, stop_after=1):
                        self._woken = True
            except (psycopg.Error, ChronoverseError) as exc:
                PASS_ERRORS.inc()
                if isinstance(exc, PublishError):
                    # After a broker lost its data, topics may come back with another partition
                    # count (or not at all): recreate what is missing, and drop the producer's
                    # stale metadata and queue.
                    self._recreate_topics()
                    self._producer.reset()
                logger.warning(
                    "scheduling pass failed, retrying in %.1fs: %s",
                    backoff,
                    exc,
                    exc_info=exc,
                    extra={"action": "scheduler_pass_failed"},
                )
                if listener is not None:
                    listener.close()
                    listener = None
                stop.wait(backoff)
                backoff = min(10.0, backoff * 2)
        if listener is not None:
            listener.close()

    def _job_message(self, job_id: UUID, workflow_id: UUID) -> OutgoingMessage:
        message = JobMessage(job_id=job_id, workflow_id=workflow_id)
        return OutgoingMessage(
            topic=self._settings.topic(Topic.JOBS),
            key=str(workflow_id),
            value=message.encode(),
        )

    def _recreate_topics(self) -> None:
        """A broker that lost its data lost its topics too; create them (explicitly) again."""
        try:
            created = ensure_topics(self._settings, self._settings.all_topics())
        except ChronoverseError as exc:
            logger.warning("cannot check topics: %s", exc, extra={"action": "topics_check_failed"})
            return
        if created:
            logger.warning(
                "re-created missing topics %s", created, extra={"action": "topics_recreated"}
            )


def _due(row: dict[str, Any]) -> DueWorkflow:
    """A claimed workflow row (claim_due_workflows' columns) as the planner's input."""
    return DueWorkflow(
        id=row["id"],
        user_id=row["user_id"],
        next_run_at=row["next_run_at"],
        schedule=schedule_of(row["interval_minutes"], row["cron"], row["timezone"], dst_of(row)),
        catchup=catchup_of(row),
        has_active_job=row["has_active_job"],
    )
