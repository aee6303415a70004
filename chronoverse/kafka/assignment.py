"""Whether a consumer holds partitions, for readiness: a member that gets none consumes nothing.

A consumer group can leave a member without partitions for good: more replicas than partitions,
or a broker whose group coordinator is stuck (tansu, after a member left during a rebalance,
answers every newcomer "rebalance in progress" for ever). The process then looks healthy while it
does nothing. :class:`AssignmentWatch` records what the consumer loop is given; once the member
has held no partition for longer than a few session timeouts while its topics have partitions,
:func:`assignment_problem` names the problem, ``/readyz`` reports it and the loop logs it once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

from chronoverse.kafka.metrics import ASSIGNED
from chronoverse.kafka.offsets import TopicPartition
from chronoverse.settings import KafkaSettings

logger = logging.getLogger(__name__)


def assignment_problem(
    *,
    group: str,
    assigned: int,
    unassigned_s: float,
    topic_partitions: int | None,
    timeout_s: float,
) -> str | None:
    """Why a member is not ready, or None.

    ``unassigned_s``: how long it has held no partition (0 while it holds some);
    ``topic_partitions``: how many partitions its topics have (None: not known yet).
    """
    if assigned > 0 or unassigned_s <= timeout_s:
        return None
    if topic_partitions == 0:
        return None  # nothing to assign: the topics are missing, which the kafka check reports
    known = "" if topic_partitions is None else f"; its topics have {topic_partitions} partitions"
    return f"no partitions assigned for {unassigned_s:.0f} s (group {group}{known})"


class AssignmentWatch:
    """What the group has given one consumer, and since when it has held nothing.

    Written by the consumer loop (its rebalance callbacks), read by the readiness probe.
    """

    def __init__(
        self, group: str, *, timeout_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.group = group
        self.timeout_s = timeout_s
        self._clock = clock
        self._lock = threading.Lock()
        self._assigned: set[TopicPartition] = set()
        self._unassigned_since: float | None = clock()
        self._topic_partitions: int | None = None
        self._reported: str | None = None
        ASSIGNED.labels(group).set(0)

    @classmethod
    def for_group(cls, settings: KafkaSettings, group: str) -> AssignmentWatch:
        return cls(group, timeout_s=settings.kafka_assignment_timeout_s)

    @property
    def assigned(self) -> frozenset[TopicPartition]:
        with self._lock:
            return frozenset(self._assigned)

    def assign(self, partitions: Iterable[TopicPartition]) -> None:
        with self._lock:
            self._assigned.update(partitions)
            self._changed()

    def revoke(self, partitions: Iterable[TopicPartition]) -> None:
        with self._lock:
            self._assigned.difference_update(partitions)
            self._changed()

    def restart(self) -> None:
        """A new consumer instance: it holds nothing, since now."""
        with self._lock:
            self._assigned.clear()
            self._unassigned_since = self._clock()
            self._changed()

    def _changed(self) -> None:
        if not self._assigned and self._unassigned_since is None:
            self._unassigned_since = self._clock()
        elif self._assigned:
            self._unassigned_since = None
        ASSIGNED.labels(self.group).set(len(self._assigned))

    def set_topic_partitions(self, count: int) -> None:
        with self._lock:
            self._topic_partitions = count

    @property
    def unassigned_s(self) -> float:
        """How long the consumer has held no partition (0 while it holds some)."""
        with self._lock:
            since = self._unassigned_since
        return 0.0 if since is None else max(0.0, self._clock() - since)

    def problem(self) -> str | None:
        with self._lock:
            assigned, partitions = len(self._assigned), self._topic_partitions
        return assignment_problem(
            group=self.group,
            assigned=assigned,
            unassigned_s=self.unassigned_s,
            topic_partitions=partitions,
            timeout_s=self.timeout_s,
        )

    def report(self) -> None:
        """Log when the member becomes stuck or recovers: once per change, not per call."""
        problem = self.problem()
        stuck = problem is not None
        if stuck == (self._reported is not None):
            return
        self._reported = problem
        if problem is not None:
            logger.error(
                "consumer is not consuming: %s",
                problem,
                extra={"action": "consumer_unassigned", "group": self.group},
            )
        else:
            logger.info(
                "consumer has partitions again",
                extra={"action": "consumer_assigned_again", "group": self.group},
            )
