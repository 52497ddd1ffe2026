"""Results: one figure per registry per round for every metric, summarised as the median with the
min-max spread, the ratio moorage/reference of the medians, and whether the issue's target is
met; printed as a table and written as JSON. Nothing here asserts an absolute time."""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.registries import KINDS, MOORAGE


@dataclass
class Target:
    text: str  # as the issue states it, e.g. "ratio >= 3"
    check: Callable[[Metric], bool]


def at_least(ratio: float) -> Target:
    return Target(f"ratio >= {ratio:g}", lambda m: m.ratio() is not None and m.ratio() >= ratio)


def moorage_below(limit: float, unit: str) -> Target:
    return Target(f"moorage < {limit:g} {unit}", lambda m: m.median(MOORAGE) < limit)


def moorage_at_most(limit: float, unit: str) -> Target:
    return Target(f"moorage <= {limit:g} {unit}", lambda m: m.median(MOORAGE) <= limit)


def first_at_most(limit: float, unit: str, label: str) -> Target:
    """For a metric of two of moorage's own setups: the first (`label`) at most `limit`."""
    return Target(f"{label} <= {limit:g} {unit}", lambda m: m.median(m.kinds[0]) <= limit)


@dataclass
class Metric:
    workload: str
    name: str
    unit: str
    higher_is_better: bool
    target: Target | None = None
    # what is compared: the two registries, or two setups of moorage (e.g. a UI page and the
    # API's listing), named in the table's cells; the ratio is the first over the second
    kinds: tuple[str, str] = KINDS
    # the ratio is the median of each round's ratio rather than the ratio of the medians: for
    # setups measured one right after the other, round by round, so that what the machine's
    # speed does between rounds falls out of the ratio
    paired: bool = False
    samples: dict[str, list[float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.samples = self.samples or {kind: [] for kind in self.kinds}

    def add(self, kind: str, value: float) -> None:
        self.samples[kind].append(value)

    def median(self, kind: str) -> float:
        values = self.samples[kind]
        return statistics.median(values) if values else float("nan")

    def ratio(self) -> float | None:
        first, second = self.kinds
        if not self.samples[first] or not self.samples[second] or self.median(second) == 0:
            return None
        if self.paired:
            pairs = zip(self.samples[first], self.samples[second], strict=False)
            return statistics.median(a / b for a, b in pairs if b)
        return self.median(first) / self.median(second)

    def met(self) -> bool | None:
        if self.target is None or not all(self.samples[k] for k in self.kinds):
            return None
        return bool(self.target.check(self))

    def to_json(self) -> dict[str, Any]:
        def summary(kind: str) -> dict[str, Any] | None:
            values = self.samples[kind]
            if not values:
                return None
            return {
                "median": self.median(kind),
                "min": min(values),
                "max": max(values),
                "samples": values,
            }

        return {
            "workload": self.workload,
            "metric": self.name,
            "unit": self.unit,
            "higher_is_better": self.higher_is_better,
            "kinds": list(self.kinds),
            **{kind: summary(kind) for kind in self.kinds},
            "ratio": self.ratio(),
            "paired": self.paired,
            "target": self.target.text if self.target else None,
            "met": self.met(),
        }


class Results:
    def __init__(self) -> None:
        self.metrics: list[Metric] = []
        self.meta: dict[str, Any] = {}

    def metric(
        self,
        workload: str,
        name: str,
        unit: str,
        higher_is_better: bool = True,
        target: Target | None = None,
        kinds: tuple[str, str] = KINDS,
        paired: bool = False,
    ) -> Metric:
        metric = Metric(workload, name, unit, higher_is_better, target, kinds, paired)
        self.metrics.append(metric)
        return metric

    def to_json(self) -> dict[str, Any]:
        workloads: dict[str, list[dict[str, Any]]] = {}
        for metric in self.metrics:
            workloads.setdefault(metric.workload, []).append(metric.to_json())
        return {"meta": self.meta, "workloads": workloads}

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n")

    def table(self) -> str:
        header = [
            "workload",
            "metric",
            "unit",
            "moorage median [min-max]",
            "reference median [min-max]",
            "ratio m/r",
            "target",
            "met",
        ]
        rows = [header]
        for metric in self.metrics:
            ratio = metric.ratio()
            met = metric.met()
            rows.append(
                [
                    metric.workload,
                    metric.name,
                    metric.unit + ("" if metric.higher_is_better else " (lower better)"),
                    *(
                        (_spread(metric.samples[k]) for k in KINDS)
                        if metric.kinds == KINDS
                        else (f"{k}: {_spread(metric.samples[k])}" for k in metric.kinds)
                    ),
                    "-" if ratio is None else f"{ratio:.2f}" + (" *" if metric.paired else ""),
                    metric.target.text if metric.target else "",
                    "" if met is None else ("yes" if met else "NO"),
                ]
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        lines = []
        for n, row in enumerate(rows):
            lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
            if n == 0:
                lines.append("  ".join("-" * w for w in widths))
        return "\n".join(line.rstrip() for line in lines)


def _number(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _spread(values: list[float]) -> str:
    if not values:
        return "-"
    median = statistics.median(values)
    if len(values) == 1:
        return _number(median)
    return f"{_number(median)} [{_number(min(values))}-{_number(max(values))}]"
