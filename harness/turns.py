"""How well a repeating fault kept to its clock: the turns it took against those it was asked for.

A repeating fault (``every_s``, ``harness.nemesis``) takes its next turn only
once the previous one is done: a ``kill_random`` with ``restart`` waits for
the replacement worker, so on a loaded machine a kill "every 2 s" may come
every 4 s. The turns asked are those whose planned time, ``at_s + k *
every_s`` (k = 0, 1, ...; at most ``times``), came before the nemesis
stopped; the turns taken are those it started (fired or skipped); the gap
is the time between the starts of two turns in a row. A fault that took
fewer turns than it was asked for still counts as fired as long as its turns
fired: its shortfall is reported beside the verdict (the history's
``nemesis_turns`` entries, ``results.json``'s ``turns`` and the CLI line
``kill_random f1: 73 of 149 turns, median gap 4.3 s``), never hidden.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Turns:
    """One repeating fault's turns over a run (``asked``, ``taken``, of which ``fired``)."""

    fault_id: str
    fault: str  # its kind
    every_s: float
    asked: int
    taken: int
    fired: int
    median_gap_s: float | None  # None with fewer than two turns
    window_s: float  # from the nemesis's start to its stop

    @property
    def behind(self) -> bool:
        """It took fewer turns than its clock asked for."""
        return self.taken < self.asked

    def line(self) -> str:
        """``kill_random f1: 73 of 149 turns, median gap 4.3 s (every 2 s asked)``."""
        gap = "" if self.median_gap_s is None else f", median gap {self.median_gap_s:.1f} s"
        skipped = "" if self.fired == self.taken else f", {self.taken - self.fired} skipped"
        return (f"{self.fault} {self.fault_id}: {self.taken} of {self.asked} turns{gap} "
                f"(every {self.every_s:g} s asked){skipped}")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Turns:
        gap = raw.get("median_gap_s")
        return cls(str(raw["fault_id"]), str(raw["fault"]), float(raw["every_s"]),
                   int(raw["asked"]), int(raw["taken"]), int(raw["fired"]),
                   None if gap is None else float(gap), float(raw["window_s"]))


def asked_turns(at_s: float | None, every_s: float, times: int | None, window_s: float) -> int:
    """How many turns a fault first due at ``at_s`` (default 0) and then every ``every_s``
    is asked for before the nemesis stopped ``window_s`` after it started; at most
    ``times``. A turn due exactly as the nemesis stopped is not asked for. Jitter moves
    each turn but not the plan, so it is left out."""
    first = at_s or 0.0
    if window_s <= first:
        return 0
    due = math.ceil((window_s - first) / every_s)  # k = 0 .. due-1 fall before window_s
    return due if times is None else min(times, due)


def median_gap(starts: Sequence[float]) -> float | None:
    """The median time between consecutive turn starts (seconds), rounded to 0.1 ms."""
    if len(starts) < 2:
        return None
    ordered = sorted(starts)
    return round(statistics.median(b - a for a, b in zip(ordered, ordered[1:], strict=False)), 4)


def count_turns(fault_id: str, fault: str, *, at_s: float | None, every_s: float,
                times: int | None, window_s: float, starts: Sequence[float],
                fired: int) -> Turns:
    """The ``Turns`` of one fault from the moments its turns started (seconds on any clock)
    and how many of them fired."""
    return Turns(fault_id, fault, every_s, asked_turns(at_s, every_s, times, window_s),
                 len(starts), fired, median_gap(starts), round(window_s, 4))
