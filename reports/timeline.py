"""What happened when: worker lanes, fault windows, failpoint hits and job progress.

Every time here is in seconds since the run's ``run_start`` entry. The
history's ``ts`` (harness wall clock), the worker events' ``ts_ms`` (Redis
``TIME``) and the service's ``call_ts`` are all read from the same host's
clock, so they share one axis.

A lane is one worker incarnation (``w1``, ``w1.2``, ``rescuer-f1``): from its
``process_start`` to its ``process_exit`` (or the end of the history), with
the SIGKILL that ended it, the SIGSTOP/SIGCONT pauses inside it, the
failpoints it hit and the writes its fencing check rejected. Faults come in
two shapes: a window (``sever_redis``, ``redis_toxic``, ``restart_redis``,
``service_errors``, ``pause_past_lease``) shaded from ``fault_start`` to
``fault_heal``, and an instant (a kill, a damaged file) drawn as one line.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from harness.history import Entry, EntryKind, History, SutEventName

WINDOW_KINDS: Mapping[str, str] = {
    "sever_redis": "Redis cut",
    "redis_toxic": "Redis {toxic}",
    "restart_redis": "Redis down",
    "service_errors": "service errors",
    "pause_past_lease": "{worker} paused",
    "stop": "SIGTERM {worker}, {grace_ms} ms grace",
    "rolling_restart": "rolling restart, {grace_ms} ms grace each",
}
"""Fault kinds that last a while, with the words for their shaded window."""

INSTANT_KINDS: Mapping[str, str] = {
    "kill_at_phase": "SIGKILL {worker}",
    "kill_random": "SIGKILL {worker}",
    "corrupt_chunk": "chunk {chunk} {mode}",
    "delete_source": "source deleted",
}
"""Fault kinds that act at one moment, with the words for their line."""


@dataclass(frozen=True)
class Lane:
    """One worker incarnation's life."""

    name: str
    pid: int
    start: float
    end: float
    end_reason: str  # "SIGKILL", "exit 0", "exit -15", "still running"
    pauses: tuple[tuple[float, float], ...]
    hits: tuple[tuple[float, str], ...]  # (time, failpoint name)
    rejected: tuple[float, ...] = ()  # writes its fencing check refused (a zombie's)

    @property
    def killed(self) -> bool:
        return self.end_reason == "SIGKILL"


UNKNOWN_COLOUR = "#57606a"
"""For a fault whose kind the schedule gives no colour (older run folders)."""


@dataclass(frozen=True)
class FaultMark:
    """One fired fault: a window (``end`` set) or an instant (``end`` None)."""

    fault_id: str
    kind: str
    start: float
    end: float | None
    label: str
    colour: str = UNKNOWN_COLOUR  # the run's schedule says how its kind is drawn


@dataclass(frozen=True)
class ProgressPoint:
    """A ``chunk_committed`` (or the job's completion): how far the job was, and who did it."""

    t: float
    job_id: str
    chunks_done: int
    chunk_count: int | None
    worker: str
    epoch: int
    event: str


@dataclass(frozen=True)
class Timeline:
    t_end: float
    lanes: tuple[Lane, ...]
    faults: tuple[FaultMark, ...]
    progress: tuple[ProgressPoint, ...]
    jobs: tuple[str, ...]  # in submit order

    @property
    def first_worker_start(self) -> float:
        return min((lane.start for lane in self.lanes), default=0.0)


def build_timeline(history: History, t0: float) -> Timeline:
    end = max((entry.ts for entry in history), default=t0) - t0
    lanes = _lanes(history, t0, end)
    faults = _faults(history, t0, end)
    progress = _progress(history, t0)
    end = max([end] + [p.t for p in progress])
    jobs = [op.job_id for op in history.submits]
    jobs += sorted({p.job_id for p in progress} - set(jobs))
    return Timeline(end, lanes, faults, progress, tuple(jobs))


def _lanes(history: History, t0: float, t_end: float) -> tuple[Lane, ...]:
    # one pass over the history, grouped by process: a lane reads only its own entries
    signals_and_exits: dict[object, list[Entry]] = {}
    hits_by_pid: dict[object, list[Entry]] = {}
    hits_by_name: dict[object, list[Entry]] = {}
    rejected_by_name: dict[object, list[Entry]] = {}
    for entry in history:
        if entry.kind in (EntryKind.PROCESS_SIGNAL, EntryKind.PROCESS_EXIT):
            signals_and_exits.setdefault(entry.get("pid"), []).append(entry)
        elif entry.kind == EntryKind.FAILPOINT_HIT:
            if entry.get("pid") is None:
                hits_by_name.setdefault(entry.get("worker"), []).append(entry)
            else:
                hits_by_pid.setdefault(entry.get("pid"), []).append(entry)
        elif entry.kind == EntryKind.REJECTED_WRITE:
            rejected_by_name.setdefault(entry.get("worker_id"), []).append(entry)
    lanes: list[Lane] = []
    for proc in history.processes:
        if proc.role != "worker":
            continue
        start = history.by_index[proc.index].ts - t0
        end, reason = t_end, "still running"
        pauses: list[tuple[float, float]] = []
        paused_at: float | None = None
        for entry in signals_and_exits.get(proc.pid, ()):
            if entry.index <= proc.index:
                continue
            t = entry.ts - t0
            if entry.kind == EntryKind.PROCESS_SIGNAL:
                signal = entry.get("signal")
                if signal == "SIGSTOP":
                    paused_at = t
                elif signal == "SIGCONT" and paused_at is not None:
                    pauses.append((paused_at, t))
                    paused_at = None
                elif signal == "SIGKILL":
                    end, reason = t, "SIGKILL"
                    break
            else:
                end, reason = t, f"exit {entry.get('code')}"
                break
        if paused_at is not None:
            pauses.append((paused_at, end))
        own_hits = sorted(hits_by_pid.get(proc.pid, []) + hits_by_name.get(proc.name, []),
                          key=lambda entry: entry.index)
        hits = tuple((entry.ts - t0, str(entry.get("point"))) for entry in own_hits)
        rejected = tuple(ms / 1000.0 - t0 for entry in rejected_by_name.get(proc.name, ())
                         if (ms := _millis(entry.get("ts_ms"))) is not None)
        lanes.append(Lane(proc.name, proc.pid, start, max(end, start), reason, tuple(pauses),
                          hits, rejected))
    return tuple(sorted(lanes, key=lambda lane: lane.start))


def _faults(history: History, t0: float, t_end: float) -> tuple[FaultMark, ...]:
    heals = {str(entry.get("fault_id")): entry.ts - t0
             for entry in history.of_kind(EntryKind.FAULT_HEAL)}
    colours = {f.fault_id: f.colour for f in history.schedule if f.colour is not None}
    marks: list[FaultMark] = []
    for entry in history.of_kind(EntryKind.FAULT_START):
        fault_id, kind = str(entry.get("fault_id")), str(entry.get("fault"))
        colour = colours.get(fault_id, UNKNOWN_COLOUR)
        start = entry.ts - t0
        words = _words(entry.fields)
        if kind in WINDOW_KINDS:
            label = WINDOW_KINDS[kind].format_map(words)
            end = heals.get(fault_id, t_end)
            if kind == "pause_past_lease":
                # the SIGSTOP comes just before fault_start: the window starts at the pause
                start = min(start, _last_signal_before(history, entry.index, "SIGSTOP", t0,
                                                       default=start))
            marks.append(FaultMark(fault_id, kind, start, max(end, start), label, colour))
        else:
            template = INSTANT_KINDS.get(kind, kind)
            if kind in ("kill_at_phase", "kill_random"):
                # the fault is recorded once the kill is done; draw it at the kill
                start = _last_signal_before(history, entry.index, "SIGKILL", t0, default=start)
            marks.append(FaultMark(fault_id, kind, start, None, template.format_map(words),
                                   colour))
    return tuple(marks)


def _millis(value: Any) -> float | None:
    """A Redis millisecond timestamp, whether the stream gave it as a number or a string."""
    try:
        return None if value is None or isinstance(value, bool) else float(value)
    except (TypeError, ValueError):
        return None


class _Words(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "?"


def _words(fields: Mapping[str, Any]) -> _Words:
    params = fields.get("params") or {}
    words = _Words({key: value for key, value in params.items() if value is not None})
    words.update({key: value for key, value in fields.items()
                  if key in ("worker", "job", "chunk") and value is not None})
    return words


def _last_signal_before(history: History, index: int, signal: str, t0: float, *,
                        default: float) -> float:
    """The time of the latest ``signal`` among the few entries just before entry ``index``."""
    for earlier in range(index - 1, index - 9, -1):
        entry = history.by_index.get(earlier)
        if entry is not None and entry.kind == EntryKind.PROCESS_SIGNAL \
                and entry.get("signal") == signal:
            return entry.ts - t0
    return default


def _progress(history: History, t0: float) -> tuple[ProgressPoint, ...]:
    """Each commit with the job's chunks done after it: the event's ``chunks_done`` when it
    carries one, else the number of distinct chunks committed so far."""
    points: list[ProgressPoint] = []
    committed: dict[str, set[int]] = {}
    counts: dict[str, int] = {}
    for event in sorted(history.sut_events, key=lambda e: (e.ts_ms, e.seq)):
        t = event.ts_ms / 1000.0 - t0
        count = event.data_int("chunk_count")
        if count is not None:
            counts[event.job_id] = count
        if event.event == SutEventName.CHUNK_COMMITTED:
            chunk = event.data_int("chunk")
            done_set = committed.setdefault(event.job_id, set())
            if chunk is not None:
                done_set.add(chunk)
            done = event.data_int("chunks_done")
            points.append(ProgressPoint(t, event.job_id, len(done_set) if done is None else done,
                                        counts.get(event.job_id), event.worker_id, event.epoch,
                                        event.event))
        elif event.event == SutEventName.JOB_COMPLETED:
            total = counts.get(event.job_id, len(committed.get(event.job_id, ())))
            points.append(ProgressPoint(t, event.job_id, total, total, event.worker_id,
                                        event.epoch, event.event))
    return tuple(points)


def key_events(history: History, t0: float, *,
               routine: bool = True) -> list[tuple[float, str, str]]:
    """The run's turning points in order, as (time, who, what) rows for the event table:
    process starts, signals and exits of workers, faults, failpoint hits, recoveries,
    terminal job events. Without ``routine``, each job's submit, claim and completion are
    left out (a soak has thousands; the jobs table lists every job's end)."""
    roles = {proc.pid: proc.role for proc in history.processes}
    rows: list[tuple[float, str, str]] = []
    for entry in history:
        t, kind = entry.ts - t0, entry.kind
        if kind == EntryKind.PROCESS_START and entry.get("role") == "worker":
            rows.append((t, str(entry.get("name")), f"started (pid {entry.get('pid')})"))
        elif kind == EntryKind.PROCESS_START and entry.index > 0 and _restarted(history, entry):
            rows.append((t, str(entry.get("name")), f"restarted (pid {entry.get('pid')})"))
        elif kind == EntryKind.PROCESS_SIGNAL and (roles.get(entry.get("pid")) == "worker"
                                                   or entry.get("signal") == "SIGKILL"):
            rows.append((t, str(entry.get("name")), f"{entry.get('signal')} sent"))
        elif kind == EntryKind.PROCESS_EXIT and roles.get(entry.get("pid")) == "worker":
            rows.append((t, str(entry.get("name")), f"exited with code {entry.get('code')}"))
        elif kind == EntryKind.FAULT_START:
            rows.append((t, "nemesis", f"fault {entry.get('fault_id')} {entry.get('fault')} "
                                       f"fired{_fault_target(entry.fields)}"))
        elif kind == EntryKind.FAULT_HEAL:
            rows.append((t, "nemesis", f"fault {entry.get('fault_id')} healed"))
        elif kind == EntryKind.FAULT_SKIPPED:
            rows.append((t, "nemesis", f"fault {entry.get('fault_id')} did not fire: "
                                       f"{entry.get('reason')}"))
        elif kind == EntryKind.FAILPOINT_HIT:
            where = f" (job {entry.get('job')}, chunk {entry.get('chunk')})" \
                if entry.get("chunk") is not None else ""
            rows.append((t, str(entry.get("worker")), f"hit failpoint {entry.get('point')} "
                                                      f"#{entry.get('hit')}{where}"))
        elif kind == EntryKind.OP and routine:
            rows.append((t, "harness", f"submitted job {entry.get('job_id')}"))
        elif kind == EntryKind.REJECTED_WRITE and (ms := _millis(entry.get("ts_ms"))) is not None:
            rows.append((ms / 1000.0 - t0, str(entry.get("worker_id")),
                         f"write {entry.get('op')} of job {entry.get('job_id')} rejected: "
                         f"epoch {entry.get('epoch')} < {entry.get('current_epoch')} "
                         f"({entry.get('reason')})"))
    notable = _NOTABLE_EVENTS if routine else _NOTABLE_EVENTS - _ROUTINE_EVENTS
    for event in history.sut_events:
        if event.event in notable:
            rows.append((event.ts_ms / 1000.0 - t0, event.worker_id,
                         f"{event.event} job {event.job_id} epoch {event.epoch}"
                         f"{_event_detail(event.data)}"))
    rows.sort(key=lambda row: row[0])
    return rows


_NOTABLE_EVENTS = frozenset({
    SutEventName.JOB_CLAIMED, SutEventName.RECOVERY_STARTED, SutEventName.PROCESSING_RESUMED,
    SutEventName.RECOVERY_COMPLETED, SutEventName.RECOVERY_FAILED, SutEventName.JOB_COMPLETED,
    SutEventName.JOB_FAILED, SutEventName.JOB_CANCELLED, SutEventName.JOB_RELEASED,
})


_ROUTINE_EVENTS = frozenset({SutEventName.JOB_CLAIMED, SutEventName.JOB_COMPLETED})


def _event_detail(data: Mapping[str, Any]) -> str:
    if "reason" in data:
        return f": {data['reason']}"
    if "committed" in data and "remaining" in data:
        return f" (kept {len(data['committed'])} chunk(s), {len(data['remaining'])} to do)"
    return ""


def _fault_target(fields: Mapping[str, Any]) -> str:
    parts = [f"{key} {fields[key]}" for key in ("worker", "job", "chunk")
             if fields.get(key) is not None]
    return f" ({', '.join(parts)})" if parts else ""


def _restarted(history: History, entry: Entry) -> bool:
    name = entry.get("name")
    return any(proc.name == name and proc.index < entry.index for proc in history.processes)
