"""`chronoverse jobs events` shows each event's data on one line: set keys only, long values cut."""

from __future__ import annotations

from chronoverse.cli.jobs import event_details


def test_only_keys_with_a_value_are_shown_in_order() -> None:
    data = {"status": "FAILED", "attempt": 2, "exit_code": None, "handed_back": False}
    assert event_details(data) == "status=FAILED attempt=2 handed_back=false"


def test_a_long_value_is_cut_to_the_width() -> None:
    shown = event_details({"error": "x" * 100, "attempt": 1}, width=10)
    assert shown == "error=xxxxxxxxx… attempt=1"


def test_no_data_is_an_empty_cell() -> None:
    assert event_details({}) == ""
    assert event_details({"idempotency_key": None}) == ""
