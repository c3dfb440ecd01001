"""Generated workloads: the jobs an exploration submits, drawn and shrunk with its faults.

A pack draws a ``DrawnWorkload`` (``Exploring.workloads``; the reference pack's
is ``harness.packs.reference.workloads``): the scenario's ``Workload`` (how many
jobs, each one's length and deadline), the worker settings it implies (how many
chunks a job sends at once), how the external service behaves (the scenario's
``service`` block: idempotency keys honoured or ignored, the status endpoint
answered or not) and each job's items (chunks or parts), which the schedule drawn
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

from harness.scenario import ServiceSpec, Workload

if TYPE_CHECKING:
    from harness.explore.strategies import Schedule

# bins of the items-per-job histogram (an upper bound each, the last open)
ITEM_BINS = (1, 2, 5, 10, 20, 40)


@dataclass(frozen=True)
class DrawnWorkload:
    """One example's workload: the scenario's ``workload``, the worker ``settings`` it
    sets, each job's ``items`` (chunks, parts), a ``shape`` label a job
    (e.g. ``partial last chunk``, ``one part + 1 byte``) for the spread, and the
    scenario's ``service`` block (None: the base scenario's)."""

    workload: Workload
    items: tuple[int, ...]
    settings: Mapping[str, str] = field(default_factory=dict)
    shapes: tuple[str, ...] = ()
    service: ServiceSpec | None = None

    @property
    def chunks(self) -> int:
        """The items every job has: a per-item fault at a later occurrence than this
        may meet a job that ends first."""
        return min(self.items)

    @property
    def deadlines(self) -> tuple[float | None, ...]:
        """Each job's deadline in seconds from its submit (None: it has none)."""
        return tuple(self.workload.timeout_of(i) for i in range(self.workload.jobs))

    @property
    def undated(self) -> int:
        """How many jobs, from the first submitted, have no deadline: the ones the faults
        can count on meeting (a job past its deadline ends TIMED_OUT wherever it is)."""
        dated = [i for i, deadline in enumerate(self.deadlines) if deadline is not None]
        return dated[0] if dated else self.workload.jobs

    @property
    def concurrency(self) -> int:
        """The jobs one worker runs at once (its ``concurrency`` setting; default 1)."""
        return int(self.settings.get("concurrency", "1"))

    def describe(self) -> str:
        extra = "".join(f", {k}={v}" for k, v in sorted(self.settings.items()))
        dated = [d for d in self.deadlines if d is not None]
        if dated:
            extra += f", deadline {'/'.join(f'{d:g}' for d in sorted(set(dated)))} s " \
                     f"on {len(dated)} job(s)"
        if self.service is not None and self.service.has_behaviour:
            extra += f", service: {service_label(self.service)}"
        return (f"{self.workload.jobs} {self.workload.kind} job(s) of "
                f"{'/'.join(str(i) for i in self.items)} item(s){extra}")

    def to_json(self) -> dict[str, Any]:
        work = self.workload
        sizes = [work.size_of(i) for i in range(work.jobs)] if work.kind == "upload" else None
        return {"kind": work.kind, "jobs": work.jobs, "items_per_job": list(self.items),
                "upload_bytes": sizes, "growing": work.growing if sizes is not None else None,
                "timeout_s_per_job": list(self.deadlines),
                "service": None if self.service is None
                else self.service.model_dump(exclude_defaults=True),
                "settings": dict(self.settings), "shapes": list(self.shapes)}


def service_label(service: ServiceSpec) -> str:
    """How a service block behaves, in a few words (``keys ignored, no status``)."""
    keys = f"keys {service.idempotency_keys}"
    return keys + ("" if service.status_endpoint else ", no status")


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
    """The workloads an exploration tried, one ``add`` an example: besides the jobs and
    their lengths, the deadlines drawn (``deadline_s``: one a job that had one), the
    service behaviours and how many schedules cut off some workers only (``partitions``)."""

    jobs: list[int] = field(default_factory=list)
    items: list[int] = field(default_factory=list)
    upload_bytes: list[int] = field(default_factory=list)
    workers: list[int] = field(default_factory=list)
    settings: Counter[str] = field(default_factory=Counter)
    shapes: Counter[str] = field(default_factory=Counter)
    deadlines: list[float] = field(default_factory=list)
    dated_examples: int = 0
    services: Counter[str] = field(default_factory=Counter)
    partitions: Counter[str] = field(default_factory=Counter)
    partitioned_examples: int = 0

    def add(self, drawn: DrawnWorkload, workers: int, *,
            partial: Sequence[str] = ()) -> None:
        """One example: ``partial`` names its faults that act on some workers only
        (``sever_redis [w2]``)."""
        work = drawn.workload
        self.jobs.append(work.jobs)
        self.items.extend(drawn.items)
        if work.kind == "upload":
            self.upload_bytes.extend(work.size_of(i) for i in range(work.jobs))
        self.workers.append(workers)
        self.settings.update(f"{k}={v}" for k, v in drawn.settings.items())
        self.shapes.update(drawn.shapes)
        dated = [d for d in drawn.deadlines if d is not None]
        self.deadlines.extend(dated)
        self.dated_examples += bool(dated)
        self.services[service_label(drawn.service or ServiceSpec())] += 1
        self.partitions.update(partial)
        self.partitioned_examples += bool(partial)

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
            "deadlines": {"examples": self.dated_examples, "jobs": len(self.deadlines),
                          "deadline_s_histogram": {f"{k:g}": v for k, v in
                                                   sorted(Counter(self.deadlines).items())}},
            "service": dict(self.services.most_common()),
            "partitions": {"examples": self.partitioned_examples,
                           "faults": dict(self.partitions.most_common())},
        }

    def describe(self) -> str:
        """One line for the terminal."""
        summary = self.to_json()
        parts = []
        for name in ("jobs", "items_per_job", "upload_bytes"):
            if (values := summary[name]) is not None:
                parts.append(f"{name.replace('_', ' ')} {values['min']}/"
                             f"{values['median']:g}/{values['max']} (min/median/max)")
        if self.dated_examples:
            parts.append(f"deadlines in {self.dated_examples} example(s)")
        behaving = {k: v for k, v in self.services.items() if k != "keys honoured"}
        if behaving:
            parts.append("service " + ", ".join(f"{k} x{v}" for k, v in behaving.items()))
        if self.partitioned_examples:
            parts.append(f"some workers cut off in {self.partitioned_examples} example(s)")
        return "; ".join(parts)
