"""The core's model of a job for drawing reachable faults, read off the catalog.

Used for a target that gives no model of its own (``Vocabulary.model``;
see ``harness.explore.reach``). The catalog's order is taken as the order
a job passes its points: those before the first repeating point once, the
repeating points once per item (chunk, part), the rest once; points
reached only after a crash are left out of a fresh job. After a crash, a
takeover passes the after-crash points, then goes on where the crash
was: the item in hand again from its first repeating point (an item is
done at its last one), else the point after the crash; a crash during a
takeover's own recovery is recovered from once (its after-crash points are
not passed twice). A target that names no after-crash points says nothing
of what a crashed job does next (RQ and arq run it again only after a
claim of tens of seconds expires), so nothing is drawn there; nor after a
graceful stop.
"""

from __future__ import annotations

from collections.abc import Sequence

from harness.explore.reach import Effect, Path, Step, core_effect
from harness.faults import FaultSpec


class SequenceModel:
    """A job that passes the catalog's points in order; see the module docstring."""

    def __init__(self, points: Sequence[str], *, repeating: frozenset[str],
                 after_crash: frozenset[str], quiet: frozenset[str], items: int) -> None:
        order = [p for p in points if p not in quiet]
        passed = [p for p in order if p not in after_crash]
        self.block = tuple(p for p in passed if p in repeating)
        first = next((i for i, p in enumerate(passed) if p in repeating), len(passed))
        self.head = tuple(p for p in passed[:first] if p not in repeating)
        self.tail = tuple(p for p in passed[first:] if p not in repeating)
        self.after_crash = tuple(p for p in order if p in after_crash)
        self.items = max(1, items)

    def items_from(self, first: int) -> Path:
        """The repeating points of items ``first`` to the last."""
        return tuple(Step(p, i) for i in range(first, self.items) for p in self.block)

    def fresh(self) -> Path:
        return (*(Step(p) for p in self.head), *self.items_from(0), *(Step(p) for p in self.tail))

    def taken_over(self, path: Path, at: int, damage: tuple[FaultSpec, ...]) -> Path | None:
        if not self.after_crash or damage:
            return None  # what comes after a crash (or its damage) is not known here
        # a crash during a takeover's own recovery is recovered from once, not twice
        left = tuple(step for step in resume(path, at, self.block)
                     if step.point not in self.after_crash)
        return (*(Step(p) for p in self.after_crash), *left)

    def released(self, path: Path, at: int) -> Path | None:
        return None

    def effect(self, group: tuple[FaultSpec, ...]) -> Effect:
        return core_effect(group)


def resume(path: Path, at: int, block: Sequence[str]) -> Path:
    """What is left of ``path`` after an interruption at ``path[at]``: the item in hand
    again from its first repeating point (unless the interruption came at its last,
    which finishes it), else what follows ``path[at]``."""
    step = path[at]
    if step.item is None or not block or step.point == block[-1]:
        return path[at + 1:]
    after = at + 1
    while after < len(path) and path[after].item == step.item:
        after += 1
    return (*(Step(p, step.item) for p in block), *path[after:])
