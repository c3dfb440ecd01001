"""The effects ledger and a service's call log, copied into the history for the queue checkers.

A pack's jobs append to the run's ledger (``Environment.ledger_path``) with
``harness.failpoint.record``: one JSON line per attempt that began
(``start``) and per side effect applied (``effect``). A pack's billable
service logs every call it answered. At the end of a run a pack's
``collect`` copies both into the history, and the generic job-queue checkers
(``harness.checkers.queue``) judge "lost", "at most / at least once" and
"recovered in time" from them, never from the queue library's own
bookkeeping.

``killed_attempts`` is the one rule for "which job was in flight when a
process was SIGKILLed": the job's latest attempt start before the kill was
written by the killed process, or by the killed worker (a forked child, such
as RQ's work horse, writes its own pid but its worker's name, and dies with
it). The queue checkers and the report's recovery histogram both use it.

History entries written here (the schema's ``effect`` and ``service_call``)::

    effect        {job, what, pid, worker, effect_ts, ...}   one ledger line
    service_call  {service, job, key, pid, billed, duplicate, call_ts}
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.history import Entry, EntryKind, History, HistoryWriter

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


@dataclass(frozen=True)
class KilledAttempt:
    """A job whose attempt was running in a process when that process was SIGKILLed."""

    job: str
    pid: int  # the killed process
    name: str
    ts: float  # when the kill was sent
    later: tuple[LedgerLine, ...]  # the job's attempts begun after the kill, in order


def attempt_starts(history: History) -> dict[str, list[LedgerLine]]:
    """Each job's ``start`` lines (one per attempt that began), in ledger order."""
    starts: dict[str, list[LedgerLine]] = {}
    for line in ledger_lines(history):
        if line.what == START:
            starts.setdefault(line.job, []).append(line)
    return starts


def killed_attempts(history: History,
                    starts: Mapping[str, Sequence[LedgerLine]] | None = None,
                    ) -> list[KilledAttempt]:
    """Every (SIGKILL, job) where the job's latest attempt start at or before the kill was
    written by the killed process or worker; ``starts`` defaults to the ledger's."""
    if starts is None:
        starts = attempt_starts(history)
    by_writer: dict[object, set[str]] = {}  # by pid and by worker name, the jobs it started
    for job, attempts in starts.items():
        for line in attempts:
            by_writer.setdefault(("pid", line.pid), set()).add(job)
            by_writer.setdefault(("worker", line.worker), set()).add(job)
    found = []
    for entry in history.of_kind(EntryKind.PROCESS_SIGNAL):
        if entry.get("signal") != "SIGKILL":
            continue
        pid, name, ts = int(entry.get("pid") or 0), str(entry.get("name")), entry.ts
        mine = by_writer.get(("pid", pid), set()) | by_writer.get(("worker", name), set())
        for job, attempts in starts.items():
            if job not in mine:  # none of its attempts was this process's
                continue
            before = [a for a in attempts if a.ts <= ts]
            if before and written_by(before[-1], pid, name):
                found.append(KilledAttempt(job, pid, name, ts,
                                           tuple(a for a in attempts if a.ts > ts)))
    return found


def written_by(line: LedgerLine, pid: int, name: str) -> bool:
    """Whether process ``pid`` named ``name``, or a child of that worker, wrote ``line``."""
    return line.pid == pid or (line.worker is not None and line.worker == name)
