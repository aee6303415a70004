"""The steady scenario's count of the slots due in a run (one job per nominal slot)."""

from bench.scenarios.steady import slots_due

MINUTE_US = 60_000_000


def test_slots_due_counts_each_workflows_slots_up_to_the_end() -> None:
    # First slots at 0 s and 30 s, every minute: 0, 60 and 30 fall before 89.99 s; 90 does not.
    assert slots_due(2, 30_000_000, 89_990_000) == 3
    assert slots_due(2, 30_000_000, 90_000_000) == 4  # a slot on the end is due
    assert slots_due(2, 30_000_000, 29_999_999) == 1


def test_a_run_of_whole_minutes_ends_half_a_spacing_before_a_slot() -> None:
    spacing = MINUTE_US // 10_000
    assert slots_due(10_000, spacing, 3 * MINUTE_US - spacing // 2) == 30_000
