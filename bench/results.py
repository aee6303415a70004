"""What a scenario reports: metrics with their samples, baselines, ratios and targets."""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.measure import median


class Compare(enum.StrEnum):
    AT_LEAST = ">="
    AT_MOST = "<="


class Subject(enum.StrEnum):
    """What a target is about: our own number, or our number divided by the baseline's."""

    OURS = "ours"
    RATIO = "ratio"


@dataclass(frozen=True, kw_only=True)
class Target:
    """A goal to report against (never an assertion)."""

    compare: Compare
    value: float
    subject: Subject = Subject.OURS

    def met(self, ours: float | None, ratio: float | None) -> bool | None:
        actual = ours if self.subject is Subject.OURS else ratio
        if actual is None or math.isnan(actual):
            return None
        return actual >= self.value if self.compare is Compare.AT_LEAST else actual <= self.value

    def describe(self, unit: str) -> str:
        if self.subject is Subject.RATIO:
            return f"ratio {self.compare.value} {self.value:g}x"
        return f"{self.compare.value} {self.value:g} {unit}"


def _median_or_none(samples: Sequence[float]) -> float | None:
    return median(samples) if samples else None


@dataclass(frozen=True, kw_only=True)
class Metric:
    """One row of the report. ``ours`` and ``baseline`` are medians over the repeats' samples."""

    scenario: str
    name: str
    unit: str
    samples: tuple[float, ...]
    baseline_samples: tuple[float, ...] = ()
    baseline_name: str = ""
    target: Target | None = None
    note: str = ""

    @property
    def ours(self) -> float | None:
        return _median_or_none(self.samples)

    @property
    def baseline(self) -> float | None:
        return _median_or_none(self.baseline_samples)

    @property
    def ratio(self) -> float | None:
        """Ours divided by the baseline (both medians)."""
        ours, baseline = self.ours, self.baseline
        if ours is None or baseline is None or baseline == 0:
            return None
        return ours / baseline

    @property
    def met(self) -> bool | None:
        return self.target.met(self.ours, self.ratio) if self.target else None

    def with_baseline(self, name: str, samples: Sequence[float], target: Target | None) -> Metric:
        return Metric(
            scenario=self.scenario,
            name=self.name,
            unit=self.unit,
            samples=self.samples,
            baseline_samples=tuple(samples),
            baseline_name=name,
            target=target,
            note=self.note,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "metric": self.name,
            "unit": self.unit,
            "ours": self.ours,
            "samples": list(self.samples),
            "baseline_name": self.baseline_name or None,
            "baseline": self.baseline,
            "baseline_samples": list(self.baseline_samples),
            "ratio": self.ratio,
            "target": self.target.describe(self.unit) if self.target else None,
            "met": self.met,
            "note": self.note or None,
        }


@dataclass(kw_only=True)
class ScenarioResult:
    """A scenario's metrics, with the setup and configuration that produced them."""

    name: str
    title: str
    setup: str
    config: dict[str, Any] = field(default_factory=dict)
    metrics: list[Metric] = field(default_factory=list)
    duration_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "setup": self.setup,
            "config": self.config,
            "duration_s": round(self.duration_s, 1),
            "metrics": [m.to_json() for m in self.metrics],
        }
