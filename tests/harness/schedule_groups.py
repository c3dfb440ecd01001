"""A drawn schedule cut back into the groups it was drawn as, for walking the reach model.

The draws (``harness.explore.strategies``) pick one group at a time: a kill
without a replacement and the damage it leaves (``at_crash``) are one group,
every other fault is one of its own.
"""

from __future__ import annotations

from harness.faults import FaultSpec
from harness.faults.kill_at_phase import KillAtPhaseSpec


def groups(faults: tuple[FaultSpec, ...]) -> list[tuple[FaultSpec, ...]]:
    """``faults`` as the groups they were drawn in."""
    out: list[tuple[FaultSpec, ...]] = []
    for fault in faults:
        after_kill = out and isinstance(out[-1][0], KillAtPhaseSpec) and not out[-1][0].restart
        if getattr(fault, "at_crash", False) and after_kill and len(out[-1]) == 1:
            out[-1] = (*out[-1], fault)
        else:
            out.append((fault,))
    return out
