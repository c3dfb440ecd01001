"""Generated workloads: the jobs an exploration submits, drawn and shrunk with its faults.

A pack draws a ``DrawnWorkload`` (``Exploring.workloads``; the reference pack's
is ``harness.packs.reference.workloads``): the scenario's ``Workload`` (how many
jobs, each one's length), the worker settings it implies (how many chunks a job
sends at once) and each job's items (chunks or parts), which the schedule drawn
beside it needs to keep its per-item faults reachable. ``with_schedules`` composes a
workload strategy with a schedule strategy, the workload first, so Hypothesis
shrinks both: fewer jobs, shorter ones, then simpler faults. ``WorkloadSpread``
summarises what an exploration tried (``exploration.json``'s ``workloads``).

Without ``crashlab explore --workloads`` the workload is the base scenario's
own (``fixed``), as it always was.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hypothesis import strategies as st

from harness.scenario import Workload

if TYPE_CHECKING:
    from harness.explore.strategies import Schedule

# bins of the items-per-job histogram (an upper bound each, the last open)
ITEM_BINS = (1, 2, 5, 10, 20, 40)


@dataclass(frozen=True)
class DrawnWorkload:
    """One example's workload: the scenario's ``workload``, the worker ``settings`` it
    sets, each job's ``items`` (chunks, parts) and a ``shape`` label a job
    (e.g. ``partial last chunk``, ``one part + 1 byte``) for the spread."""

    workload: Workload
    items: tuple[int, ...]
    settings: Mapping[str, str] = field(default_factory=dict)
    shapes: tuple[str, ...] = ()

    @property
    def chunks(self) -> int:
        """The items every job has: a per-item fault at a later occurrence than this
        may meet a job that ends first."""
        return min(self.items)

    def describe(self) -> str:
        extra = "".join(f", {k}={v}" for k, v in sorted(self.settings.items()))
        return (f"{self.workload.jobs} {self.workload.kind} job(s) of "
                f"{'/'.join(str(i) for i in self.items)} item(s){extra}")

    def to_json(self) -> dict[str, Any]:
        work = self.workload
        sizes = [work.size_of(i) for i in range(work.jobs)] if work.kind == "upload" else None
        return {"kind": work.kind, "jobs": work.jobs, "items_per_job": list(self.items),
                "upload_bytes": sizes, "growing": work.growing if sizes is not None else None,
                "settings": dict(self.settings), "shapes": list(self.shapes)}


@dataclass(frozen=True)
class Example:
    """What one example runs: a workload and the schedule of faults drawn for it."""

    workload: DrawnWorkload
    schedule: Schedule


def fixed(workload: Workload, items: int) -> DrawnWorkload:
    """The base scenario's own workload, every job of ``items`` items."""
    return DrawnWorkload(workload, (items,) * workload.jobs)


def with_schedules(workloads: st.SearchStrategy[DrawnWorkload],
                   schedule_for: Callable[[DrawnWorkload], st.SearchStrategy[Schedule]],
                   ) -> st.SearchStrategy[Example]:
    """A workload, then a schedule whose faults that workload reaches. (The explorer
    draws a fixed workload's schedules alone, not through this: wrapping them, even in a
    ``map``, changes which schedules a seed gives.)"""
    return workloads.flatmap(
        lambda drawn: schedule_for(drawn).map(lambda schedule: Example(drawn, schedule)))


def spread_of(values: Sequence[float]) -> dict[str, Any] | None:
    """Min, median and max of ``values`` (None when there are none)."""
    if not values:
        return None
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def _item_bin(items: int) -> str:
    low = 1
    for high in ITEM_BINS:
        if items <= high:
            return str(high) if low == high else f"{low}-{high}"
        low = high + 1
    return f">{ITEM_BINS[-1]}"


@dataclass
class WorkloadSpread:
    """The workloads an exploration tried, one ``add`` an example."""

    jobs: list[int] = field(default_factory=list)
    items: list[int] = field(default_factory=list)
    upload_bytes: list[int] = field(default_factory=list)
    workers: list[int] = field(default_factory=list)
    settings: Counter[str] = field(default_factory=Counter)
    shapes: Counter[str] = field(default_factory=Counter)

    def add(self, drawn: DrawnWorkload, workers: int) -> None:
        work = drawn.workload
        self.jobs.append(work.jobs)
        self.items.extend(drawn.items)
        if work.kind == "upload":
            self.upload_bytes.extend(work.size_of(i) for i in range(work.jobs))
        self.workers.append(workers)
        self.settings.update(f"{k}={v}" for k, v in drawn.settings.items())
        self.shapes.update(drawn.shapes)

    def to_json(self) -> dict[str, Any]:
        by_bin = Counter(_item_bin(i) for i in self.items)
        return {
            "examples": len(self.jobs),
            "jobs": spread_of(self.jobs),
            "jobs_histogram": {str(k): v for k, v in sorted(Counter(self.jobs).items())},
            "items_per_job": spread_of(self.items),
            "items_histogram": {label: by_bin[label] for label in
                                [_item_bin(i) for i in (*ITEM_BINS, ITEM_BINS[-1] + 1)]
                                if by_bin[label]},
            "upload_bytes": spread_of(self.upload_bytes),
            "workers_histogram": {str(k): v for k, v in sorted(Counter(self.workers).items())},
            "settings": dict(sorted(self.settings.items())),
            "shapes": dict(self.shapes.most_common()),
        }

    def describe(self) -> str:
        """One line for the terminal."""
        summary = self.to_json()
        parts = []
        for name in ("jobs", "items_per_job", "upload_bytes"):
            if (values := summary[name]) is not None:
                parts.append(f"{name.replace('_', ' ')} {values['min']}/"
                             f"{values['median']:g}/{values['max']} (min/median/max)")
        return "; ".join(parts)
