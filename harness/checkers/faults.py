"""fault_coverage: the run did to the worker what its schedule planned.

Invariant: every fault of the schedule (``run_start.schedule``, plus any a
``fault_planned`` added during the run, e.g. an operator's kill in ``crashlab
debug``) fired (has a ``fault_start``), and every ``fault_start`` was healed (has a later
``fault_heal``; the runner heals every fault at the end, so a heal of a fault
that never fired is harmless). This is about the run, not the worker: a planned fault that
did not fire (``fault_skipped``, or simply no ``fault_start``), a fault that
was never healed, or one that fired without being planned leaves the other
verdicts without the experiment they were meant to judge, so the verdict is
unknown, never invalid.
"""

from __future__ import annotations

from harness.checkers.base import CheckResult, Expectations, Findings
from harness.checkers.registry import checker
from harness.history import Entry, EntryKind, FinalState, History, PlannedFault


def _describe(fault: PlannedFault) -> str:
    params = ", ".join(f"{key}={value}" for key, value in sorted(fault.params.items()))
    return f"{fault.fault_id} ({fault.fault}{' ' + params if params else ''})"


@checker(suite="faults", rank=160)
class FaultCoverage:
    name = "fault_coverage"

    def check(self, history: History, state: FinalState,
              expectations: Expectations) -> CheckResult:
        found = Findings(self.name)
        if history.run_start is None:
            found.unknown("the history has no run_start, so the planned faults are unknown")
            return found.result("")
        planned = {fault.fault_id: fault for fault in history.schedule}
        fired: set[str] = set()
        unhealed: dict[str, Entry] = {}
        skipped: dict[str, str] = {}
        kinds = (EntryKind.FAULT_START, EntryKind.FAULT_HEAL, EntryKind.FAULT_SKIPPED)
        records = sorted((e for kind in kinds for e in history.of_kind(kind)),
                         key=lambda e: e.index)
        for entry in records:
            if entry.kind == EntryKind.FAULT_START:
                fault_id = entry.text("fault_id")
                fired.add(fault_id)
                unhealed[fault_id] = entry
                if fault_id not in planned:
                    found.unknown(f"fault {fault_id} ({entry.get('fault')}) fired at history "
                                  f"entry {entry.index} but is not in the schedule")
            elif entry.kind == EntryKind.FAULT_HEAL:
                unhealed.pop(entry.text("fault_id"), None)  # healing an unfired fault is a no-op
            elif entry.kind == EntryKind.FAULT_SKIPPED:
                skipped[entry.text("fault_id")] = str(entry.get("reason") or "no reason given")
        for fault_id, fault in planned.items():
            if fault_id not in fired:
                why = (f": skipped ({skipped[fault_id]})" if fault_id in skipped
                       else ": no fault_start was recorded")
                found.unknown(f"planned fault {_describe(fault)} never fired{why}")
        for fault_id, start in unhealed.items():
            found.unknown(f"fault {fault_id} ({start.get('fault')}) started at history entry "
                          f"{start.index} but was never healed after it")
        if not planned:
            return found.result("no faults were planned")
        return found.result(f"every planned fault ({len(planned)}) fired and was healed")
