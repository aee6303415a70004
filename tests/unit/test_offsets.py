from chronoverse.kafka.offsets import OffsetTracker

TP = ("jobs", 0)


def test_commits_one_past_the_last_offset_when_all_are_done() -> None:
    tracker = OffsetTracker()
    tracker.assign([TP])
    epochs = {o: tracker.start(TP, o) for o in (10, 11, 12)}
    for offset, epoch in epochs.items():
        tracker.done(TP, offset, epoch)
    assert tracker.to_commit() == {TP: 13}


def test_out_of_order_completion_holds_the_watermark_at_the_oldest_unfinished() -> None:
    tracker = OffsetTracker()
    tracker.assign([TP])
    epochs = {o: tracker.start(TP, o) for o in (0, 1, 2, 3)}
    tracker.done(TP, 2, epochs[2])
    tracker.done(TP, 3, epochs[3])
    assert tracker.committable(TP) == 0
    tracker.done(TP, 0, epochs[0])
    assert tracker.committable(TP) == 1
    tracker.done(TP, 1, epochs[1])
    assert tracker.committable(TP) == 4


def test_to_commit_reports_only_advances() -> None:
    tracker = OffsetTracker()
    tracker.assign([TP])
    epoch = tracker.start(TP, 5)
    assert tracker.to_commit() == {}  # nothing done: the start position needs no commit
    tracker.done(TP, 5, epoch)
    assert tracker.to_commit() == {TP: 6}
    assert tracker.to_commit() == {}


def test_a_completion_from_an_earlier_assignment_is_ignored() -> None:
    tracker = OffsetTracker()
    tracker.assign([TP])
    old_epoch = tracker.start(TP, 7)
    tracker.revoke([TP])
    tracker.assign([TP])
    new_epoch = tracker.start(TP, 7)
    assert not tracker.done(TP, 7, old_epoch)
    assert tracker.in_flight() == 1
    assert tracker.done(TP, 7, new_epoch)
    assert tracker.in_flight() == 0


def test_revoked_partitions_are_forgotten() -> None:
    tracker = OffsetTracker()
    other = ("jobs", 1)
    tracker.assign([TP, other])
    tracker.start(TP, 0)
    tracker.done(other, 0, tracker.start(other, 0))
    tracker.revoke([TP])
    assert tracker.in_flight() == 0
    assert tracker.committable(TP) is None
    assert set(tracker.to_commit()) == {other}


def test_in_flight_counts_per_partition() -> None:
    tracker = OffsetTracker()
    other = ("jobs", 1)
    tracker.assign([TP, other])
    for offset in range(3):
        tracker.start(TP, offset)
    tracker.start(other, 0)
    assert tracker.in_flight([TP]) == 3
    assert tracker.in_flight([other]) == 1
    assert tracker.in_flight() == 4
