"""When dispatch claims again while some users' ready jobs wait at the in-flight cap.

Claiming numbers every ready job by user (claim_pending_jobs), so with a large backlog it is the
expensive statement of the loop. While users are held back it runs again only when a cheap count
of their jobs in flight shows that a quarter of a cap's worth finished (a refill worth a
claim), or after CHRONOVERSE_DISPATCH_RECHECK_S whatever happened, or when a NOTIFY or new
automatic jobs bring other work.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID


def refill_size(cap: int) -> int:
    """Jobs of held-back users that must finish before claiming again is worth it."""
    return max(1, cap // 4)


@dataclass(frozen=True, kw_only=True)
class HeldBack:
    """What the last dispatch left waiting: whose ready jobs, and how many of theirs were in
    flight (QUEUED or RUNNING) then."""

    user_ids: tuple[UUID, ...]
    in_flight: int
    at: float  # monotonic time of that dispatch

    def recheck_due(self, now: float, recheck_s: float) -> bool:
        """Whether to claim again whatever the count says (jobs of other users may have become
        ready, or another scheduling worker held the rows)."""
        return now - self.at >= recheck_s

    def has_room(self, in_flight_now: int, cap: int) -> bool:
        """Whether enough of these users' jobs finished since for a claim to publish a refill."""
        return self.in_flight - in_flight_now >= refill_size(cap)
