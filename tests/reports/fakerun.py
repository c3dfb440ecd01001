"""Run folders written at chosen times, for report tests that need exact numbers or scale.

``FakeRun`` collects what a run would record (worker starts, submits, worker
events, ledger lines, kills, fault windows, final snapshots), then ``save``
writes it the way the runner does: ``history.jsonl`` through a real
``HistoryWriter`` (its clock set to each entry's time), the worker's events
and the ledger copied at the end, and ``state.json`` through ``save_state``.
``soak`` builds a big one: jobs arriving at a rate, a few worker slots, a
worker killed every few seconds and its job taken over by the replacement.
Times are seconds after ``T0``.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.history import HistoryWriter, save_state
from harness.target import JobSnapshot

T0 = 1_800_000_000.0
LEASE_S = 1.0


@dataclass
class _Clock:
    now: float = T0

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeRun:
    target: str = "reference"
    limit: float = 30.0
    rows: list[tuple[float, str, dict[str, Any]]] = field(default_factory=list)
    late: list[tuple[float, str, dict[str, Any]]] = field(default_factory=list)  # copied at end
    schedule: list[dict[str, Any]] = field(default_factory=list)
    jobs: dict[str, JobSnapshot] = field(default_factory=dict)
    pids: dict[str, int] = field(default_factory=dict)
    seq: dict[str, int] = field(default_factory=dict)

    def worker(self, name: str, at: float) -> FakeRun:
        pid = self.pids[name] = 1000 + len(self.pids)
        incarnation = int(name.rpartition(".")[2]) if "." in name else 1
        self.rows.append((at, "process_start", {"name": name, "role": "worker", "pid": pid,
                                                "incarnation": incarnation}))
        return self

    def submit(self, job: str, at: float) -> FakeRun:
        self.rows.append((at, "op", {"op": "submit", "job_id": job, "media_seconds": 2.0,
                                     "chunk_seconds": 1.0, "expected_chunks": 2}))
        return self

    def event(self, job: str, event: str, worker: str, at: float, epoch: int = 1,
              **data: Any) -> FakeRun:
        seq = self.seq[job] = self.seq.get(job, 0) + 1
        self.late.append((at, "sut_event", {
            "stream_id": f"{int((T0 + at) * 1000)}-{seq}", "event": event, "job_id": job,
            "worker_id": worker, "epoch": epoch, "seq": seq, "ts_ms": int((T0 + at) * 1000),
            "recovery": event == "recovery_started", "data": data}))
        return self

    def start_line(self, job: str, worker: str, at: float) -> FakeRun:
        """An effects-ledger ``start`` line (how the rq and arq packs record an attempt)."""
        self.late.append((at, "effect", {"job": job, "what": "start", "pid": self.pids[worker],
                                         "worker": worker, "effect_ts": T0 + at}))
        return self

    def kill(self, worker: str, at: float, fault_id: str | None = None) -> FakeRun:
        pid = self.pids[worker]
        self.rows += [(at, "process_signal", {"name": worker, "pid": pid, "signal": "SIGKILL"}),
                      (at + 0.001, "process_exit", {"name": worker, "pid": pid, "code": -9})]
        if fault_id is not None:
            self.rows.append((at + 0.002, "fault_start", {"fault_id": fault_id,
                                                          "fault": "kill_random",
                                                          "worker": worker}))
            self.schedule.append({"fault_id": fault_id, "fault": "kill_random",
                                  "params": {"kind": "kill_random"}, "colour": "#cf222e"})
        return self

    def window(self, fault_id: str, kind: str, at: float, heal: float) -> FakeRun:
        self.rows += [(at, "fault_start", {"fault_id": fault_id, "fault": kind}),
                      (heal, "fault_heal", {"fault_id": fault_id})]
        self.schedule.append({"fault_id": fault_id, "fault": kind, "params": {"kind": kind},
                              "colour": "#8250df"})
        return self

    def final(self, job: str, state: str, ended: float | None, *,
              record_end: bool = True) -> FakeRun:
        """The job's final snapshot; ``record_end`` false leaves ``ended_at`` empty, as the
        reference pack did before it filled it in."""
        self.jobs[job] = JobSnapshot(
            job_id=job, state=state, retry_count=0, max_retries=3, error=None, state_sets=[],
            ended_at=T0 + ended if ended is not None and record_end else None,
            chunk_count=2, chunks_done=2 if state == "COMPLETED" else 0)
        return self

    def save(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        clock = _Clock()
        end = max([t for t, _, _ in self.rows + self.late] + [0.0]) + 0.5
        with HistoryWriter(folder / "history.jsonl", clock=clock) as writer:
            writer.record("run_start", scenario="fake", seed=1, target=self.target,
                          schedule=self.schedule, settings={}, effects="exactly_once",
                          recovery_limit_s=self.limit)
            for at, kind, fields in sorted(self.rows, key=lambda row: row[0]):
                clock.now = T0 + at
                writer.record(kind, **fields)
            clock.now = T0 + end
            writer.record("run_end", reason="settled")
            for _, kind, fields in sorted(self.late, key=lambda row: row[0]):
                writer.record(kind, **fields)
        save_state(folder / "state.json", self.jobs)
        return folder


def job(run: FakeRun, job_id: str, worker: str, submitted: float, start: float,
        end: float, *, epoch: int = 1, recovered: bool = False) -> None:
    """One job's submit and worker events, from claim (or takeover) to completion."""
    if not recovered:
        run.submit(job_id, submitted)
        run.event(job_id, "job_queued", "api", submitted, epoch=0)
    run.event(job_id, "recovery_started" if recovered else "job_claimed", worker, start, epoch)
    if run.target != "reference":
        run.start_line(job_id, worker, start)
    for chunk in (0, 1):
        run.event(job_id, "chunk_committed", worker, start + (end - start) * (chunk + 1) / 2.1,
                  epoch, chunk=chunk, chunks_done=chunk + 1, chunk_count=2)
    run.event(job_id, "job_completed", worker, end, epoch, chunk_count=2)


def soak(*, jobs: int, workers: int, rate: float, kill_every: float, sever_every: float = 0.0,
         job_s: float = 1.0, target: str = "reference", record_end: bool = True) -> FakeRun:
    """A soak-like run: job ``i`` arrives at ``1 + i / rate`` and runs ``job_s`` on the first
    free worker slot; every ``kill_every`` s the next slot's worker is SIGKILLed, restarted
    at once, and the job it held is taken over after the lease and finished; every
    ``sever_every`` s Redis is cut for a second."""
    run = FakeRun(target=target)
    current = {f"w{k + 1}": f"w{k + 1}" for k in range(workers)}
    starts = {name: 1 for name in current}
    for name in current:
        run.worker(name, 0.5)
    free = [(0.5, name) for name in current]  # (free at, slot)
    heapq.heapify(free)
    running: dict[str, list[tuple[str, float, float, float]]] = {n: [] for n in current}
    for i in range(jobs):
        arrives = 1 + i / rate
        at, slot = heapq.heappop(free)
        begin = max(arrives, at)
        running[slot].append((f"job-{i}", arrives, begin, begin + job_s))
        heapq.heappush(free, (begin + job_s, slot))
    last = max(end for held in running.values() for _, _, _, end in held)
    kills: list[tuple[float, str]] = []
    t, turn = 2.0, 0
    while t < last:
        kills.append((t, f"w{turn % workers + 1}"))
        t, turn = t + kill_every, turn + 1
    for number, (kill_t, slot) in enumerate(kills, start=1):
        victim = current[slot]
        starts[slot] += 1
        current[slot] = f"{slot}.{starts[slot]}"
        run.kill(victim, kill_t, f"f1.{number}" if number > 1 else "f1")
        run.worker(current[slot], kill_t + 0.02)
    for slot, held in running.items():
        incarnations = [(0.0, slot)] + [(k, f"{slot}.{n}") for n, (k, _) in enumerate(
            [(k, s) for k, s in kills if s == slot], start=2)]
        for job_id, arrives, begin, end in held:
            owner = max(inc for inc in incarnations if inc[0] <= begin)[1]
            cut = next((k for k, name in incarnations if begin < k < end), None)
            if cut is None:
                job(run, job_id, owner, arrives, begin, end)
                run.final(job_id, "COMPLETED", end, record_end=record_end)
                continue
            run.submit(job_id, arrives)
            run.event(job_id, "job_queued", "api", arrives, epoch=0)
            run.event(job_id, "job_claimed", owner, begin, 1)
            if target != "reference":
                run.start_line(job_id, owner, begin)
            heir = max(inc for inc in incarnations if inc[0] <= cut)[1]
            finished = cut + LEASE_S + job_s / 2
            job(run, job_id, heir, arrives, cut + LEASE_S, finished, epoch=2, recovered=True)
            run.final(job_id, "COMPLETED", finished, record_end=record_end)
    if sever_every:
        at, number = sever_every, 1
        while at < last:
            run.window(f"f2.{number}" if number > 1 else "f2", "sever_redis", at, at + 1.0)
            at, number = at + sever_every, number + 1
    return run
