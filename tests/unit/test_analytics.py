"""The analytics window a request may ask for, the derived figures, and the CLI's --since."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from chronoverse.cli.analytics import figure_rows, since_value
from chronoverse.domain import JobStatus
from chronoverse.errors import InvalidFieldsError
from services.server.store.analytics import JobStats, window

NOW = datetime(2027, 3, 28, 12, 0, tzinfo=UTC)


def test_the_default_window_is_the_last_seven_days() -> None:
    span = window(None, now=NOW)
    assert (span.since, span.until) == (NOW - timedelta(days=7), NOW)


@pytest.mark.parametrize(
    "since",
    [
        NOW - timedelta(days=90),
        NOW - timedelta(days=90, minutes=4),
        NOW,
        NOW + timedelta(minutes=4),
    ],
)
def test_a_window_up_to_ninety_days_is_taken_with_a_little_clock_grace(since: datetime) -> None:
    assert window(since, now=NOW).since == since


@pytest.mark.parametrize(
    ("since", "message"),
    [
        (NOW - timedelta(days=90, minutes=6), "at most 90 days ago"),
        (NOW + timedelta(minutes=6), "in the future"),
        (datetime(2027, 3, 27), "time zone"),  # noqa: DTZ001 - the naive time under test
    ],
)
def test_other_windows_are_refused_naming_since(since: datetime, message: str) -> None:
    with pytest.raises(InvalidFieldsError) as info:
        window(since, now=NOW)
    [error] = info.value.errors
    assert error.field == "since"
    assert message in error.message


def stats(**by_status: int) -> JobStats:
    return JobStats(
        by_status={s: by_status.get(s.value.lower(), 0) for s in JobStatus},
        duration_p50_s=None,
        duration_p95_s=None,
        execution_time_s=0.0,
        log_lines=0,
    )


def test_success_rate_is_completed_over_finished() -> None:
    assert stats().success_rate is None
    assert stats(running=3, pending=1).success_rate is None
    assert stats(completed=3, failed=1, running=5).success_rate == 0.75
    assert stats(completed=1, canceled=1).success_rate == 0.5
    assert stats(completed=2, pending=1, queued=1, failed=1, canceled=1).total == 6


def test_cli_since_takes_a_span_before_now_or_a_time_as_given() -> None:
    assert since_value("90m", now=NOW) == "2027-03-28T10:30:00+00:00"
    assert since_value("24h", now=NOW) == "2027-03-27T12:00:00+00:00"
    assert since_value("30d", now=NOW) == "2027-02-26T12:00:00+00:00"
    assert since_value("2027-03-01T00:00:00Z", now=NOW) == "2027-03-01T00:00:00Z"
    assert since_value("soon", now=NOW) == "soon"  # the server says what is wrong with it


def test_cli_rows_name_every_figure() -> None:
    result = {
        "since": "a",
        "until": "b",
        "jobs": 2,
        "jobs_by_status": {"COMPLETED": 1, "FAILED": 1},
        "success_rate": 0.5,
        "duration_p50_s": 1.5,
        "duration_p95_s": None,
        "execution_time_s": 3.0,
        "log_lines": 7,
        "workflows": {
            "total": 1,
            "by_state": {"active": 1},
            "by_build_status": {"COMPLETED": 1},
        },
    }
    rows = dict(figure_rows(result))
    assert rows["success rate"] == "50.0%"
    assert rows["duration p50"] == "1.500s"
    assert rows["duration p95"] == "-"
    assert rows["  FAILED"] == 1
    assert rows["  build COMPLETED"] == 1
    assert "workflows" not in dict(figure_rows({**result, "workflows": None}))
