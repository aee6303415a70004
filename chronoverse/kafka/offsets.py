"""Which offsets are safe to commit, when messages finish out of order.

Pure bookkeeping, no I/O. A partition's committable offset is the lowest offset still in flight,
or one past the highest offset started when nothing is in flight. Each assignment of a partition
gets a new epoch, so a handler that finishes after its partition was revoked (and perhaps assigned
back) cannot move the new owner's offsets.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

TopicPartition = tuple[str, int]


@dataclass(kw_only=True)
class _PartitionState:
    epoch: int
    in_flight: set[int] = field(default_factory=set)
    next_offset: int | None = None  # one past the highest offset started
    committed: int | None = None  # the last offset handed out by to_commit()


class OffsetTracker:
    def __init__(self) -> None:
        self._partitions: dict[TopicPartition, _PartitionState] = {}
        self._epochs = 0

    def assign(self, partitions: Iterable[TopicPartition]) -> None:
        for tp in partitions:
            self._epochs += 1
            self._partitions[tp] = _PartitionState(epoch=self._epochs)

    def revoke(self, partitions: Iterable[TopicPartition]) -> None:
        for tp in partitions:
            self._partitions.pop(tp, None)

    def is_assigned(self, tp: TopicPartition) -> bool:
        return tp in self._partitions

    def is_current(self, tp: TopicPartition, epoch: int) -> bool:
        """True while ``tp`` is still held under the assignment that ``epoch`` belongs to."""
        state = self._partitions.get(tp)
        return state is not None and state.epoch == epoch

    def start(self, tp: TopicPartition, offset: int) -> int:
        """Record that ``offset`` is being processed; return the epoch to pass to :meth:`done`."""
        state = self._partitions.get(tp)
        if state is None:
            # A message fetched before an assignment callback: track it under a fresh epoch.
            self.assign([tp])
            state = self._partitions[tp]
        state.in_flight.add(offset)
        if state.committed is None:
            # The position the partition started from: committing it would change nothing.
            state.committed = offset
        if state.next_offset is None or offset >= state.next_offset:
            state.next_offset = offset + 1
        return state.epoch

    def done(self, tp: TopicPartition, offset: int, epoch: int) -> bool:
        """Record that ``offset`` finished. False when it belongs to an earlier assignment."""
        state = self._partitions.get(tp)
        if state is None or state.epoch != epoch:
            return False
        state.in_flight.discard(offset)
        return True

    def in_flight(self, partitions: Iterable[TopicPartition] | None = None) -> int:
        tps = self._partitions.keys() if partitions is None else partitions
        return sum(len(self._partitions[tp].in_flight) for tp in tps if tp in self._partitions)

    def committable(self, tp: TopicPartition) -> int | None:
        """The offset to commit for ``tp`` (the next one to read), or None if nothing is done."""
        state = self._partitions.get(tp)
        if state is None or state.next_offset is None:
            return None
        return min(state.in_flight) if state.in_flight else state.next_offset

    def to_commit(
        self, partitions: Iterable[TopicPartition] | None = None
    ) -> dict[TopicPartition, int]:
        """Offsets that advanced since the last call; marks them as handed out."""
        tps = list(self._partitions.keys() if partitions is None else partitions)
        result: dict[TopicPartition, int] = {}
        for tp in tps:
            offset = self.committable(tp)
            state = self._partitions.get(tp)
            if offset is None or state is None:
                continue
            if state.committed is None or offset > state.committed:
                state.committed = offset
                result[tp] = offset
        return result
