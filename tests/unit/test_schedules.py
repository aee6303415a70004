"""Schedules: cron in a time zone with its DST policy, intervals, previews and due slots."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from cronsim import CronSim
from hypothesis import given, settings
from hypothesis import strategies as st

from chronoverse.schedules import (
    CronSchedule,
    DstGap,
    DstOverlap,
    DstPolicy,
    FireNote,
    IntervalSchedule,
    ScheduleError,
    due_slots,
    parse_cron,
    parse_timezone,
    preview,
)

RIGA = "Europe/Riga"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def riga(expression: str, gap: DstGap = DstGap.SHIFT, overlap: DstOverlap = DstOverlap.ONCE):
    return CronSchedule(
        expression=expression, timezone=RIGA, dst=DstPolicy(gap=gap, overlap=overlap)
    )


def runs_on(schedule: CronSchedule, day: datetime) -> list[tuple[datetime, FireNote | None]]:
    """The fires whose UTC instant falls within the given UTC day (and the next few hours)."""
    fires = preview(schedule, count=6, start=day - timedelta(hours=6))
    end = day + timedelta(days=1)
    return [(f.at, f.note) for f in fires if day - timedelta(hours=6) <= f.at < end]


# --- the DST matrix: 0 3 * * * in Europe/Riga ----------------------------------------------------


def test_spring_gap_shift_runs_at_the_first_instant_after_the_gap() -> None:
    fires = runs_on(riga("0 3 * * *", gap=DstGap.SHIFT), utc(2027, 3, 28))
    assert (utc(2027, 3, 28, 1), FireNote.DST_SHIFTED) in fires
    shifted = preview(riga("0 3 * * *"), count=1, start=utc(2027, 3, 27, 12))[0]
    assert shifted.local.isoformat() == "2027-03-28T04:00:00+03:00"


def test_spring_gap_skip_does_not_run_that_day() -> None:
    fires = preview(riga("0 3 * * *", gap=DstGap.SKIP), count=3, start=utc(2027, 3, 27, 12))
    assert [f.at for f in fires] == [utc(2027, 3, 29, 0), utc(2027, 3, 30, 0), utc(2027, 3, 31, 0)]
    assert all(f.note is None for f in fires)


def test_autumn_overlap_once_runs_at_the_first_occurrence_only() -> None:
    fires = preview(
        riga("0 3 * * *", overlap=DstOverlap.ONCE), count=3, start=utc(2027, 10, 30, 12)
    )
    assert [f.at for f in fires] == [utc(2027, 10, 31, 0), utc(2027, 11, 1, 1), utc(2027, 11, 2, 1)]


def test_autumn_overlap_twice_runs_at_both() -> None:
    fires = preview(
        riga("0 3 * * *", overlap=DstOverlap.TWICE), count=3, start=utc(2027, 10, 30, 12)
    )
    assert [(f.at, f.note) for f in fires] == [
        (utc(2027, 10, 31, 0), None),
        (utc(2027, 10, 31, 1), FireNote.DST_REPEATED),
        (utc(2027, 11, 1, 1), None),
    ]
    assert [f.local.isoformat() for f in fires[:2]] == [
        "2027-10-31T03:00:00+03:00",
        "2027-10-31T03:00:00+02:00",
    ]


def test_the_second_occurrence_is_found_from_between_the_two() -> None:
    # Starting after the first 03:00 (00:00Z) and before the second (01:00Z).
    fires = preview(
        riga("0 3 * * *", overlap=DstOverlap.TWICE), count=1, start=utc(2027, 10, 31, 0, 30)
    )
    assert fires[0].at == utc(2027, 10, 31, 1)


def test_a_time_outside_the_change_is_untouched_by_either_policy() -> None:
    for gap in DstGap:
        for overlap in DstOverlap:
            fires = preview(riga("0 12 * * *", gap, overlap), count=2, start=utc(2027, 3, 28))
            assert [f.at for f in fires] == [utc(2027, 3, 28, 9), utc(2027, 3, 29, 9)]


def test_sub_hourly_expressions_follow_elapsed_time_through_both_changes() -> None:
    spring = preview(riga("30 * * * *"), count=3, start=utc(2027, 3, 28, 0, 0))
    # 02:30 then 04:30 local (03:30 does not exist): one hour of elapsed time apart.
    assert [f.at for f in spring] == [
        utc(2027, 3, 28, 0, 30),
        utc(2027, 3, 28, 1, 30),
        utc(2027, 3, 28, 2, 30),
    ]
    autumn = preview(
        riga("30 * * * *", overlap=DstOverlap.ONCE), count=3, start=utc(2027, 10, 30, 23, 0)
    )
    # 02:30+03, 03:30+03, 03:30+02: the repeated hour runs twice whatever the policy, marked.
    assert [(f.at, f.note) for f in autumn] == [
        (utc(2027, 10, 30, 23, 30), None),
        (utc(2027, 10, 31, 0, 30), None),
        (utc(2027, 10, 31, 1, 30), FireNote.DST_REPEATED),
    ]


# --- parsing -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("macro", "fields"),
    [
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@monthly", "0 0 1 * *"),
        ("@weekly", "0 0 * * 0"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@hourly", "0 * * * *"),
        ("*/5 * * * 1-5", "*/5 * * * 1-5"),
        ("0 9 * * mon-fri", "0 9 * * mon-fri"),
        ("0 0 L * *", "0 0 L * *"),
        ("0 0 * * 5#2", "0 0 * * 5#2"),
    ],
)
def test_macros_and_expressions_normalise(macro: str, fields: str) -> None:
    assert parse_cron(macro) == fields


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("@reboot", "@reboot"),
        ("@fortnightly", "unknown macro"),
        ("* * * *", "5 fields"),
        ("0 * * * * *", "5 fields"),  # cronsim takes seconds; the API does not
        ("@DAILY", "unknown macro"),
        ("*/5  * * * *", "single spaces"),
        ("5-3 * * * *", "not a valid"),  # the pattern cannot see a range's order; cronsim can
        ("61 * * * *", "accepts"),
        ("0 3 31 2 *", "not a valid"),
        ("", "5-field"),
        ("*" * 300, "at most"),
    ],
)
def test_a_bad_expression_is_refused_naming_the_field(text: str, says: str) -> None:
    with pytest.raises(ScheduleError) as info:
        parse_cron(text)
    assert info.value.field == "cron"
    assert says in info.value.message


@pytest.mark.parametrize("name", ["Mars/Olympus", "../../etc/passwd", "utc ", "", "Europe"])
def test_an_unknown_zone_is_refused(name: str) -> None:
    with pytest.raises(ScheduleError) as info:
        parse_timezone(name)
    assert info.value.field == "timezone"


def test_known_zones_are_accepted() -> None:
    assert parse_timezone("Europe/Riga") == "Europe/Riga"
    assert parse_timezone("UTC") == "UTC"


# --- intervals and due slots ---------------------------------------------------------------------


def test_an_interval_previews_from_its_anchor_or_from_now() -> None:
    every = IntervalSchedule(minutes=15)
    fresh = preview(every, count=3, start=utc(2027, 1, 1, 12, 7))
    assert [f.at for f in fresh] == [
        utc(2027, 1, 1, 12, 7),
        utc(2027, 1, 1, 12, 22),
        utc(2027, 1, 1, 12, 37),
    ]
    saved = preview(every, count=2, start=utc(2027, 1, 1, 12, 7), anchor=utc(2027, 1, 1, 11, 0))
    assert [f.at for f in saved] == [utc(2027, 1, 1, 12, 15), utc(2027, 1, 1, 12, 30)]


def test_due_interval_slots_are_counted_without_iterating() -> None:
    due = due_slots(
        IntervalSchedule(minutes=1), first=utc(2027, 1, 1), now=utc(2027, 1, 8, 0, 0, 30), keep=3
    )
    assert due.count == 7 * 24 * 60 + 1
    assert due.latest == utc(2027, 1, 8)
    assert due.recent == (utc(2027, 1, 7, 23, 58), utc(2027, 1, 7, 23, 59), utc(2027, 1, 8))
    assert due.next_after == utc(2027, 1, 8, 0, 1)


def test_due_cron_slots() -> None:
    daily = riga("0 3 * * *")
    due = due_slots(daily, first=utc(2027, 3, 26, 1), now=utc(2027, 3, 29, 0, 5), keep=2)
    # 26th 01:00Z, 27th 01:00Z, 28th 01:00Z (shifted), 29th 00:00Z (summer time)
    assert due.count == 4
    assert due.recent == (utc(2027, 3, 28, 1), utc(2027, 3, 29, 0))
    assert due.next_after == utc(2027, 3, 30, 0)


# --- property: increasing, and matching the expression in local time -----------------------------

ZONES = [
    "UTC",
    "Europe/Riga",
    "America/New_York",
    "Australia/Lord_Howe",
    "Asia/Kolkata",
    "America/Santiago",
]
fields = st.tuples(
    st.sampled_from(["0", "30", "*/15", "5,35", "*"]),
    st.sampled_from(["3", "2", "1-3", "*/6", "*", "0"]),
    st.sampled_from(["*", "1", "15", "L"]),
    st.sampled_from(["*", "3", "10", "3,10"]),
    st.sampled_from(["*", "0", "1-5"]),
)


@settings(max_examples=200, deadline=None)
@given(
    parts=fields,
    zone=st.sampled_from(ZONES),
    gap=st.sampled_from(list(DstGap)),
    overlap=st.sampled_from(list(DstOverlap)),
    start=st.datetimes(
        # hypothesis takes naive bounds and attaches the zone itself
        min_value=datetime(2026, 1, 1),  # noqa: DTZ001
        max_value=datetime(2030, 1, 1),  # noqa: DTZ001
        timezones=st.just(UTC),
    ),
)
def test_fires_strictly_increase_and_match_the_expression_locally(
    parts: tuple[str, ...], zone: str, gap: DstGap, overlap: DstOverlap, start: datetime
) -> None:
    expression = " ".join(parts)
    schedule = CronSchedule(
        expression=expression, timezone=zone, dst=DstPolicy(gap=gap, overlap=overlap)
    )
    fires = preview(schedule, count=12, start=start)
    assert fires, expression
    assert fires[0].at >= start
    assert all(a.at < b.at for a, b in itertools.pairwise(fires))
    for fire in fires:
        assert fire.at.tzinfo is UTC or fire.at.utcoffset() == timedelta(0)
        assert fire.local.astimezone(UTC) == fire.at
        if fire.note is FireNote.DST_SHIFTED:
            assert gap is DstGap.SHIFT
            continue
        # The local wall time is one the expression names: cronsim agrees it is a match.
        wall = fire.local.replace(tzinfo=None)
        just_before = (wall - timedelta(minutes=1)).replace(tzinfo=UTC)
        assert next(CronSim(expression, just_before)).replace(tzinfo=None) == wall, (
            expression,
            fire,
        )
    zone_info = ZoneInfo(zone)
    assert all(f.local.tzinfo == zone_info for f in fires)
