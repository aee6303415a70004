"""The bench's pure parts: order statistics, targets, ratios and the report table."""

import math
from concurrent.futures import ThreadPoolExecutor

import pytest

from bench.measure import median, percentile
from bench.report import markdown_table, text_table
from bench.results import Compare, Metric, ScenarioResult, Subject, Target
from bench.stack import free_port


def test_percentiles_interpolate_between_ranks() -> None:
    values = [4.0, 1.0, 3.0, 2.0]
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 4.0
    assert median(values) == 2.5
    assert percentile(values, 99) == pytest.approx(3.97)
    assert math.isnan(percentile([], 50))


def test_a_ratio_target_compares_ours_with_the_baseline() -> None:
    metric = Metric(
        scenario="containers",
        name="per job",
        unit="ms",
        samples=(120.0, 110.0, 130.0),
        baseline_samples=(100.0,),
        baseline_name="docker run",
        target=Target(compare=Compare.AT_MOST, value=1.10, subject=Subject.RATIO),
    )
    assert metric.ours == 120.0
    assert metric.ratio == pytest.approx(1.2)
    assert metric.met is False


def test_a_metric_without_samples_meets_nothing() -> None:
    target = Target(compare=Compare.AT_LEAST, value=1)
    metric = Metric(scenario="s", name="m", unit="jobs/s", samples=(), target=target)
    assert metric.ours is None
    assert metric.ratio is None
    assert metric.met is None


def test_the_table_shows_ours_baseline_ratio_and_target() -> None:
    result = ScenarioResult(
        name="heartbeat",
        title="t",
        setup="s",
        metrics=[
            Metric(
                scenario="heartbeat",
                name="jobs/s against Celery",
                unit="jobs/s",
                samples=(2000.0,),
                baseline_samples=(1000.0,),
                baseline_name="Celery",
                target=Target(compare=Compare.AT_LEAST, value=4, subject=Subject.RATIO),
            )
        ],
    )
    table = text_table([result])
    assert "2,000 jobs/s" in table
    assert "1,000 jobs/s (Celery)" in table
    assert "2.00x" in table
    assert "ratio >= 4x" in table
    assert "NO" in table
    assert markdown_table([result]).count("\n") == 2


def test_free_ports_are_never_handed_out_twice_in_a_process() -> None:
    # Binding port 0 and closing the socket lets the OS offer the same port again soon (about
    # one pick in fifty here), before any service has bound it.
    with ThreadPoolExecutor(8) as pool:
        ports = list(pool.map(lambda _: free_port(), range(500)))
    assert len(set(ports)) == len(ports)
