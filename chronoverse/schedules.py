"""Schedules: when a workflow's slots fall, for an interval or a cron expression in a time zone.

Pure: no I/O, no clock. The API validates with it and previews with it; the scheduler asks it
for the slots due between two instants.

**Interval** schedules are plain UTC arithmetic: the slots are ``anchor + k * interval``.

**Cron** schedules are a 5-field expression (or a macro such as ``@daily``) read in an IANA time
zone, evaluated with cronsim (Debian cron's semantics) in local time, then converted to UTC; only
UTC is stored or compared. Around a daylight-saving change the user chooses, per schedule:

- ``gap``: a local time that does not exist that day (spring forward) runs at the first instant
  after the gap (``shift``, Debian cron's behaviour) or not at all that day (``skip``);
- ``overlap``: a local time that happens twice (fall back) runs at its first occurrence only
  (``once``, Debian's) or at both (``twice``).

These apply to expressions with a fixed minute and hour (neither field starts with ``*``), which
is where "03:00 local" has a meaning. Expressions whose minute or hour field starts with ``*``
(``*/15 * * * *``, ``0 */2 * * *``) follow elapsed time instead: they never fire in a gap (it does
not exist) and fire in both occurrences of a repeated hour, whatever the policy; the preview marks
the repeated ones ``dst_repeated``.
"""

from __future__ import annotations

import enum
import functools
import heapq
import itertools
import re
import zoneinfo
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from cronsim import CronSim, CronSimError

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
MAX_CRON_CHARS = 200
MAX_CATCHUP_WINDOW_MINUTES = 10080


def _field(number: str, extra: str = "") -> str:
    """One cron field: ``*`` or a number or range, an optional step, in a comma list."""
    item = rf"(?:\*|{number}(?:-{number})?)(?:/[1-9][0-9]?)?{extra}"
    return rf"{item}(?:,{item})*"


_MONTHS = "JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC"
_DAYS = "SUN|MON|TUE|WED|THU|FRI|SAT"
# The syntax the API accepts, as a JSON Schema pattern (the OpenAPI document shows it): 5 fields
# separated by single spaces, each number within its field's range, or one of the macros. cronsim
# then checks what a pattern cannot (a range's order, a date that never comes).
CRON_PATTERN = (
    "^(?:@(?:yearly|annually|monthly|weekly|daily|midnight|hourly)|"
    + " ".join(
        [
            _field("[0-5]?[0-9]"),
            _field("(?:[01]?[0-9]|2[0-3])"),
            rf"(?:L|{_field('(?:0?[1-9]|[12][0-9]|3[01])')})",
            _field(f"(?:0?[1-9]|1[0-2]|{_MONTHS}|{_MONTHS.lower()})"),
            rf"(?:[0-7](?:L|#[1-5])|{_field(f'(?:[0-7]|{_DAYS}|{_DAYS.lower()})')})",
        ]
    )
    + ")$"
)
# Enough to count the slots of any realistic downtime; beyond it a count says "at least".
MAX_SLOTS_COUNTED = 100_000


class DstGap(enum.StrEnum):
    SHIFT = "shift"
    SKIP = "skip"


class DstOverlap(enum.StrEnum):
    ONCE = "once"
    TWICE = "twice"


class Catchup(enum.StrEnum):
    """What happens to slots that fell while the scheduler could not run them (or while the
    workflow was paused): only the latest runs, none runs, or every one inside a window runs."""

    LATEST = "latest"
    NONE = "none"
    ALL = "all"


class FireNote(enum.StrEnum):
    DST_SHIFTED = "dst_shifted"  # its local time did not exist; it runs just after the gap
    DST_REPEATED = "dst_repeated"  # the second occurrence of a local time that happened twice


class ScheduleError(ValueError):
    """A schedule field that cannot be used; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True, kw_only=True)
class DstPolicy:
    gap: DstGap = DstGap.SHIFT
    overlap: DstOverlap = DstOverlap.ONCE


@dataclass(frozen=True, kw_only=True)
class CatchupPolicy:
    mode: Catchup = Catchup.LATEST
    window_minutes: int | None = None  # for ALL: slots older than this are not run

    @property
    def window(self) -> timedelta:
        return timedelta(minutes=self.window_minutes or DEFAULT_CATCHUP_WINDOW_MINUTES)


DEFAULT_CATCHUP_WINDOW_MINUTES = 60


@dataclass(frozen=True, kw_only=True)
class Fire:
    """One slot: its instant (UTC), the wall time it has where the schedule lives, and why it is
    unusual, if it is."""

    at: datetime
    local: datetime
    note: FireNote | None = None


@dataclass(frozen=True, kw_only=True)
class IntervalSchedule:
    minutes: int

    @property
    def step(self) -> timedelta:
        return timedelta(minutes=self.minutes)

    def fires(self, *, anchor: datetime, after: datetime) -> Iterator[Fire]:
        """The slots ``anchor + k * interval`` (k >= 0) strictly after ``after``."""
        step = self.step
        first = anchor if anchor > after else anchor + ((after - anchor) // step + 1) * step
        at = first
        while True:
            utc = at.astimezone(UTC)
            yield Fire(at=utc, local=utc)
            at += step


@dataclass(frozen=True, kw_only=True)
class CronSchedule:
    expression: str  # 5 fields, macros expanded
    timezone: str = "UTC"
    dst: DstPolicy = field(default_factory=DstPolicy)

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)

    @property
    def fixed_time(self) -> bool:
        """Minute and hour are fixed: the DST policy applies (cronsim's, and Debian's, rule)."""
        minute, hour = self.expression.split()[:2]
        return not minute.startswith("*") and not hour.startswith("*")

    def fires(self, *, after: datetime) -> Iterator[Fire]:
        """The slots strictly after ``after``, in order."""
        zone = self.zone
        after = after.astimezone(UTC)
        fixed = self.fixed_time
        # With ``twice``, start early: the second occurrence of a repeated hour is after
        # ``after`` even when its first occurrence is before it.
        early = fixed and self.dst.overlap is DstOverlap.TWICE
        start = (after - timedelta(hours=2) if early else after).astimezone(zone)
        minutes, hours = _fixed_fields(self.expression) if fixed else (frozenset(), frozenset())
        # A repeated time's second occurrence (fold 1) can come after later first occurrences
        # (03:05 twice, 03:35 twice: 03:05, 03:35, then 03:05 again): hold fires in a heap and
        # let one go once cronsim's next first occurrence is later, as every later fire will be.
        pending: list[tuple[datetime, int, Fire]] = []
        order = itertools.count()
        for local in CronSim(self.expression, start):
            fires = list(self._fires_at(local, fixed=fixed, minutes=minutes, hours=hours))
            horizon = local.astimezone(UTC)
            while pending and pending[0][0] <= horizon:
                fire = heapq.heappop(pending)[2]
                if fire.at > after:
                    yield fire
            for fire in fires:
                heapq.heappush(pending, (fire.at, next(order), fire))

    def _fires_at(
        self, local: datetime, *, fixed: bool, minutes: frozenset[int], hours: frozenset[int]
    ) -> Iterator[Fire]:
        """What cronsim's next time means under the DST policy: zero, one or two fires."""
        if not fixed:
            note = FireNote.DST_REPEATED if local.fold and _ambiguous(local) else None
            yield Fire(at=local.astimezone(UTC), local=local, note=note)
            return
        if local.minute not in minutes or local.hour not in hours:
            # cronsim moved a time that fell in a gap to the first instant after it.
            if self.dst.gap is DstGap.SHIFT:
                yield Fire(at=local.astimezone(UTC), local=local, note=FireNote.DST_SHIFTED)
            return
        first = local.replace(fold=0)
        yield Fire(at=first.astimezone(UTC), local=first)
        if self.dst.overlap is DstOverlap.TWICE and _ambiguous(first):
            second = local.replace(fold=1)
            yield Fire(at=second.astimezone(UTC), local=second, note=FireNote.DST_REPEATED)


Schedule = IntervalSchedule | CronSchedule


def parse_cron(expression: str) -> str:
    """A cron expression or macro as the 5 fields it means; ScheduleError naming ``cron``."""
    text = expression
    if not text.strip():
        raise ScheduleError("cron", "must be a 5-field cron expression or a macro such as @daily")
    if len(text) > MAX_CRON_CHARS:
        raise ScheduleError("cron", f"must be at most {MAX_CRON_CHARS} characters")
    if text.startswith("@"):
        if text == "@reboot":
            raise ScheduleError("cron", "@reboot is not a schedule: a workflow has no boot")
        expanded = MACROS.get(text)
        if expanded is None:
            known = ", ".join(MACROS)
            raise ScheduleError("cron", f"unknown macro {text!r}; use one of {known}")
        return expanded
    if len(text.split()) != 5:
        raise ScheduleError(
            "cron", "must have 5 fields (minute hour day-of-month month day-of-week)"
        )
    if not _CRON.fullmatch(text):
        raise ScheduleError(
            "cron",
            "is not a cron expression this API accepts: 5 fields separated by single spaces, "
            "each `*`, a number in its field's range, a range, a step or a list of them "
            "(see docs/scheduling.md)",
        )
    try:
        CronSim(text, datetime(2000, 1, 1, tzinfo=UTC))
    except CronSimError as exc:
        raise ScheduleError("cron", f"is not a valid cron expression: {exc}") from exc
    return text


_CRON = re.compile(CRON_PATTERN)


@functools.cache
def known_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def parse_timezone(name: str) -> str:
    """An IANA zone name this machine knows; ScheduleError naming ``timezone`` otherwise."""
    if name not in known_zones():
        raise ScheduleError(
            "timezone", f"{name!r} is not an IANA time zone name (such as Europe/Riga or UTC)"
        )
    return name


def fires_from(
    schedule: Schedule, *, start: datetime, anchor: datetime | None = None
) -> Iterator[Fire]:
    """The slots at or after ``start``. An interval counts from ``anchor``, by default ``start``
    itself (a new workflow's first job runs at once)."""
    just_before = start - timedelta(microseconds=1)
    if isinstance(schedule, IntervalSchedule):
        return schedule.fires(anchor=anchor if anchor is not None else start, after=just_before)
    return schedule.fires(after=just_before)


def preview(
    schedule: Schedule, *, count: int, start: datetime, anchor: datetime | None = None
) -> list[Fire]:
    """The next ``count`` slots at or after ``start`` (see :func:`fires_from`)."""
    found = []
    for fire in fires_from(schedule, start=start, anchor=anchor):
        found.append(fire)
        if len(found) >= count:
            break
    return found


@dataclass(frozen=True, kw_only=True)
class DueSlots:
    """The slots due in ``[first, now]``: how many, the latest, and the next one after ``now``."""

    count: int
    counted_all: bool
    latest: datetime
    recent: tuple[datetime, ...]  # the last ones, oldest first (at most the ``keep`` asked for)
    next_after: datetime


def due_slots(schedule: Schedule, *, first: datetime, now: datetime, keep: int) -> DueSlots:
    """The slots from ``first`` (a slot, and due: ``first <= now``) up to ``now``."""
    if first > now:
        raise ValueError("no slot is due")
    if isinstance(schedule, IntervalSchedule):
        step = schedule.step
        count = (now - first) // step + 1
        latest = first + (count - 1) * step
        kept = min(keep, count)
        recent = tuple(latest - (kept - 1 - i) * step for i in range(kept))
        return DueSlots(
            count=count, counted_all=True, latest=latest, recent=recent, next_after=latest + step
        )
    # The common case, one or a few slots due: many workflows share an expression, a zone and
    # (cron slots fall on the wall clock) the same slot, so the slots after one are cached.
    ahead = _slots_after(schedule, first)
    due = [at for at in ahead if at <= now]
    if len(due) < len(ahead):
        slots = [first, *due]
        return DueSlots(
            count=len(slots),
            counted_all=True,
            latest=slots[-1],
            recent=tuple(slots[-keep:]),
            next_after=ahead[len(due)],
        )
    slots = [first]
    count = 1
    nxt: datetime | None = None
    for fire in schedule.fires(after=first):
        if fire.at > now:
            nxt = fire.at
            break
        count += 1
        slots.append(fire.at)
        if len(slots) > keep:
            del slots[0]
        if count >= MAX_SLOTS_COUNTED:
            break
    if nxt is None:  # counted up to the cap: find the last due slot and the next one directly
        nxt = next(iter(schedule.fires(after=now))).at
        latest_fire = _latest_at_or_before(schedule, now)
        if latest_fire is not None and latest_fire > slots[-1]:
            slots = [latest_fire]
        return DueSlots(
            count=count,
            counted_all=False,
            latest=slots[-1],
            recent=tuple(slots[-keep:]),
            next_after=nxt,
        )
    return DueSlots(
        count=count, counted_all=True, latest=slots[-1], recent=tuple(slots[-keep:]), next_after=nxt
    )


@functools.lru_cache(maxsize=4096)
def _slots_after(schedule: CronSchedule, after: datetime, count: int = 8) -> tuple[datetime, ...]:
    """The next ``count`` slots after ``after`` (cached: schedules are frozen values)."""
    return tuple(fire.at for fire in itertools.islice(schedule.fires(after=after), count))


def _latest_at_or_before(schedule: CronSchedule, now: datetime) -> datetime | None:
    """The last slot at or before ``now``: search back a day at a time (the cap case only)."""
    for days in (1, 7, 31, 366):
        candidates = [f.at for f in _window(schedule, now - timedelta(days=days), now)]
        if candidates:
            return candidates[-1]
    return None


def _window(schedule: CronSchedule, start: datetime, end: datetime) -> Iterator[Fire]:
    for fire in schedule.fires(after=start):
        if fire.at > end:
            return
        yield fire


@functools.lru_cache(maxsize=1024)
def _fixed_fields(expression: str) -> tuple[frozenset[int], frozenset[int]]:
    sim = CronSim(expression, datetime(2000, 1, 1, tzinfo=UTC))
    return frozenset(sim.minutes), frozenset(sim.hours)


def _ambiguous(local: datetime) -> bool:
    """Whether this wall time happens twice in its zone (the hour repeated at fall back)."""
    return local.replace(fold=0).utcoffset() != local.replace(fold=1).utcoffset()
