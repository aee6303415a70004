"""The chaos suite's judges catch what they claim to (pure: no infrastructure)."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime

from tests.chaos import checks
from tests.chaos.checks import ContainerLife, JobState, StoredLine
from tests.chaos.load import numbered_lines

JOB = JobState(
    id=uuid.uuid4(),
    workflow_id=uuid.uuid4(),
    kind="CONTAINER",
    status="COMPLETED",
    attempt=2,
    exit_code=0,
    error=None,
    created_at=datetime.now(UTC),
    finished_at=datetime.now(UTC),
    logs_attempt=2,
    logs_last_seq=2,
    logs_closed=True,
    logs_incomplete=False,
)
A1 = "aaaaaaaaaaaa"  # attempt 1's container
A2 = "bbbbbbbbbbbb"  # attempt 2's container


def lines(attempt: int, host: str, numbers: list[int]) -> list[StoredLine]:
    return [
        StoredLine(attempt=attempt, seq=n - 1, stream="stdout", line=f"line {n} {host}")
        for n in numbers
    ]


def judge(job: JobState, stored: list[StoredLine], **kw: object) -> list[str]:
    options: dict[str, object] = {
        "expected_lines": 3,
        "final_container": A2 + "0" * 52,
        "incomplete_allowed": False,
    }
    options.update(kw)
    return checks.log_violations(job, stored, **options)  # type: ignore[arg-type]


def test_the_final_attempt_s_own_lines_once_and_in_order_pass() -> None:
    stored = lines(1, A1, [1, 2]) + lines(2, A2, [1, 2, 3])
    assert judge(JOB, stored) == []


def test_a_splice_of_two_attempts_is_caught() -> None:
    # The defect of issue 14: attempt 2's later lines stored over attempt 1's earlier ones.
    stored = lines(2, A1, [1, 2]) + lines(2, A2, [3])
    found = judge(JOB, stored)
    assert any("several containers are mixed" in v for v in found), found


def test_lines_of_another_container_are_caught() -> None:
    found = judge(JOB, lines(2, A1, [1, 2, 3]))
    assert any("not from the attempt's container" in v for v in found), found


def test_a_gap_duplicate_or_reorder_is_caught() -> None:
    gap = lines(2, A2, [1, 3])
    assert any("not contiguous" in v for v in judge(JOB, gap))
    swapped = [replace(x, line=f"line {3 - x.seq} {A2}") for x in lines(2, A2, [1, 2, 3])]
    assert any("out of order" in v for v in judge(JOB, swapped))
    short = lines(2, A2, [1, 2])
    assert any("2 of 3 lines" in v for v in judge(replace(JOB, logs_last_seq=1), short))


def test_a_gap_is_allowed_only_where_marked_and_allowed() -> None:
    marked = replace(JOB, logs_incomplete=True)
    stored = lines(2, A2, [1, 3])
    assert any("marked incomplete" in v for v in judge(marked, stored))
    assert judge(marked, stored, incomplete_allowed=True) == []


def test_two_containers_of_one_job_at_once_are_caught() -> None:
    job = uuid.uuid4()
    first = ContainerLife(container_id=A1, job_id=job, started_ns=0, died_ns=10)
    after = ContainerLife(container_id=A2, job_id=job, started_ns=11, died_ns=20)
    assert checks.overlapping_runs([first, after]) == []
    during = replace(after, started_ns=5)
    assert checks.overlapping_runs([during, first])
    still = replace(first, died_ns=None)
    assert checks.overlapping_runs([still, after])
    other_job = replace(during, job_id=uuid.uuid4())
    assert checks.overlapping_runs([first, other_job]) == []
    assert checks.shortest_gap([after, first]) == 1e-9
    assert checks.shortest_gap([first, other_job]) is None


def test_unfinished_rewritten_lost_and_left_behind_jobs_are_caught() -> None:
    running = replace(JOB, status="RUNNING")
    assert checks.unfinished([running, JOB]) == [checks.unfinished([running])[0]]
    assert checks.changed_outcomes({JOB.id: ("FAILED", 1, 1)}, [JOB])
    assert checks.changed_outcomes({JOB.id: JOB.outcome()}, [JOB]) == []
    lost = uuid.uuid4()
    assert checks.missing_jobs([JOB.id, lost], {JOB.id}) == [
        f"job {lost} was created (201) but is not in Postgres"
    ]
    assert checks.left_behind({A2: JOB.id}, {JOB.id: JOB})
    assert checks.left_behind({A2: JOB.id}, {JOB.id: running}) == []


def test_a_log_is_settled_when_closed_for_the_final_attempt_or_marked() -> None:
    assert JOB.logs_settled
    assert not replace(JOB, logs_attempt=1).logs_settled  # closed for the earlier attempt only
    assert replace(JOB, logs_closed=False, logs_incomplete=True).logs_settled
    assert replace(JOB, kind="HEARTBEAT", logs_closed=False).logs_settled


def test_the_load_s_containers_print_what_the_judge_reads() -> None:
    script = numbered_lines(3)[-1]
    assert 'echo "line $i $h"' in script and "seq 1 3" in script
    assert checks.LINE.match(f"line 3 {A2}")
