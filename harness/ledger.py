"""The effects ledger and a service's call log, copied into the history for the queue checkers.

A pack's jobs append to the run's ledger (``Environment.ledger_path``) with
``harness.failpoint.record``: one JSON line per attempt that began
(``start``) and per side effect applied (``effect``). A pack's billable
service logs every call it answered. At the end of a run a pack's
``collect`` copies both into the history, and the generic job-queue checkers
(``harness.checkers.queue``) judge "lost", "at most / at least once" and
"recovered in time" from them, never from the queue library's own
bookkeeping.

History entries written here (the schema's ``effect`` and ``service_call``)::

    effect        {job, what, pid, worker, effect_ts, ...}   one ledger line
    service_call  {service, job, key, pid, billed, duplicate, call_ts}
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.history import Entry, History, HistoryWriter

EFFECT = "effect"
SERVICE_CALL = "service_call"
START = "start"  # ``what`` of the line a job writes when an attempt begins


def read_ledger(path: Path) -> list[dict[str, Any]]:
    """Every whole line of the ledger file (a torn last line is skipped)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    found = []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("job") is not None:
            found.append(entry)
    return found


def record_ledger(path: Path, history: HistoryWriter) -> int:
    """Copy the ledger into the history (its ``ts`` as ``effect_ts``); how many lines."""
    lines = read_ledger(path)
    for line in lines:
        fields = {k: v for k, v in line.items() if k not in ("ts", "index", "kind")}
        history.record(EFFECT, effect_ts=line.get("ts"), **fields)
    return len(lines)


def record_service_calls(service: str, calls: Iterable[Mapping[str, Any]],
                         history: HistoryWriter) -> None:
    """Copy a service's call log (``harness.services.billing``) into the history."""
    for call in calls:
        history.record(SERVICE_CALL, service=service, job=call.get("job"), key=call.get("key"),
                       pid=call.get("pid"), billed=bool(call.get("billed", True)),
                       duplicate=bool(call.get("duplicate", False)), call_ts=call.get("ts"))


@dataclass(frozen=True)
class LedgerLine:
    """One ``effect`` entry of the history."""

    index: int
    job: str
    what: str
    pid: int | None
    worker: str | None
    ts: float

    @classmethod
    def from_entry(cls, entry: Entry) -> LedgerLine:
        stamp = entry.get("effect_ts")
        pid = entry.get("pid")
        return cls(entry.index, entry.text("job"), entry.text("what"),
                   None if pid is None else int(pid), entry.optional_text("worker"),
                   entry.ts if stamp is None else float(stamp))


def ledger_lines(history: History) -> list[LedgerLine]:
    return [LedgerLine.from_entry(entry) for entry in history.of_kind(EFFECT)]


def billed_calls(history: History) -> dict[str, int]:
    """Per job, how many calls a service billed."""
    billed: dict[str, int] = {}
    for entry in history.of_kind(SERVICE_CALL):
        if entry.get("billed", True) and entry.get("job") is not None:
            job = str(entry.get("job"))
            billed[job] = billed.get(job, 0) + 1
    return billed
