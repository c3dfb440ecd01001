"""A synthetic run history of any size, for timing the checkers (``crashlab bench``).

``synthetic_run(events)`` writes what a long run of the reference worker
would leave behind: jobs of ``CHUNKS`` chunks, each claimed by its own
worker, cut, transcribed chunk by chunk (one billable call per chunk) and
completed; every ``CRASH_EVERY``-th job's worker is SIGKILLed by a planned
fault halfway through, and a second worker takes the job over after the
lease, resumes (the in-flight chunk's repeated call answered from the
service's idempotency cache) and completes it. The history is valid: every
checker must find every invariant held, so timing it exercises each
checker's whole path rather than an early exit. Records are in the order
the runner writes them (timeline, then the worker's stream copied at the
end), with ``index`` and ``ts`` set.
"""

from __future__ import annotations

from typing import Any

from harness.history import FinalState
from harness.target import JobSnapshot

CHUNKS = 8
CRASH_EVERY = 5
LEASE_TTL_MS = 1000
WORDS = ("alfa", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india")

Record = dict[str, Any]


class _Run:
    def __init__(self) -> None:
        self.timeline: list[Record] = []
        self.stream: list[Record] = []
        self.schedule: list[Record] = []
        self.jobs: dict[str, JobSnapshot] = {}
        self.ts_ms = 1_700_000_000_000
        self.pid = 1000
        self.calls = 0

    def tick(self, ms: int = 3) -> int:
        self.ts_ms += ms
        return self.ts_ms

    def process(self, name: str, incarnation: int) -> int:
        self.pid += 1
        self.timeline.append({"kind": "process_start", "name": name, "role": "worker",
                              "pid": self.pid, "incarnation": incarnation})
        return self.pid

    def call(self, job_id: str, chunk: int, outcome: str, text: str) -> None:
        self.calls += 1
        self.timeline.append({"kind": "external_call", "seq": self.calls,
                              "idempotency_key": f"{job_id}:{chunk}", "job_id": job_id,
                              "chunk_index": chunk, "outcome": outcome, "status_code": 200,
                              "text": text, "call_ts": self.tick() / 1000})

    def emit(self, job_id: str, seq: int, event: str, worker: str, epoch: int,
             recovery: bool = False, **data: Any) -> None:
        ts = self.tick()
        self.stream.append({"kind": "sut_event", "stream_id": f"{ts}-0", "event": event,
                            "job_id": job_id, "worker_id": worker, "epoch": epoch, "seq": seq,
                            "ts_ms": ts, "recovery": recovery, "data": data})

    def job(self, number: int, crash: bool) -> int:
        """One job's whole life; returns how many events it published."""
        job_id = f"job-{number:06d}"
        texts = [f"{WORDS[(number + c) % len(WORDS)]} {WORDS[c % len(WORDS)]}"
                 for c in range(CHUNKS)]
        transcript = " ".join(texts)
        first, second = f"{job_id}.w1", f"{job_id}.w2"
        pid = self.process(first, 1)
        self.timeline.append({"kind": "op", "op": "submit", "job_id": job_id,
                              "expected_transcript": transcript, "media_seconds": CHUNKS,
                              "chunk_seconds": 1.0, "expected_chunks": CHUNKS})
        seq = 0

        def emit(event: str, worker: str, epoch: int, recovery: bool = False,
                 **data: Any) -> None:
            nonlocal seq
            seq += 1
            self.emit(job_id, seq, event, worker, epoch, recovery, **data)

        emit("job_queued", "api", 0, filename=f"{job_id}.wav", size=64000,
             duration=float(CHUNKS), max_retries=3)
        emit("job_claimed", first, 1)
        emit("chunking_completed", first, 1, chunk_count=CHUNKS)
        last_by_first = CHUNKS // 2 - 1 if crash else CHUNKS - 1
        committed: dict[int, dict[str, Any]] = {}
        for chunk in range(last_by_first + 1):
            self.call(job_id, chunk, "new", texts[chunk])
            emit("chunk_committed", first, 1, chunk=chunk, chunks_done=chunk + 1,
                 chunk_count=CHUNKS)
            committed[chunk] = {"text": texts[chunk], "checksum": f"c{chunk}", "epoch": 1,
                                "worker": first}
        owner, epoch, retries = first, 1, 0
        if crash:
            inflight = last_by_first + 1
            fault_id = f"f{len(self.schedule) + 1}"
            params = {"point": "chunk.transcribed.before_commit", "occurrence": inflight + 1,
                      "restart": False}
            self.schedule.append({"fault_id": fault_id, "fault": "kill_at_phase",
                                  "params": params})
            self.call(job_id, inflight, "new", texts[inflight])
            self.timeline += [
                {"kind": "failpoint_hit", "worker": first, "point": params["point"], "hit": 1,
                 "job": job_id, "chunk": inflight, "pid": pid, "action": "pause"},
                {"kind": "process_signal", "name": first, "pid": pid, "signal": "SIGKILL"},
                {"kind": "process_exit", "name": first, "pid": pid, "code": -9},
                {"kind": "fault_start", "fault_id": fault_id, "fault": "kill_at_phase",
                 "params": params},
                {"kind": "fault_heal", "fault_id": fault_id},
            ]
            self.process(second, 1)
            self.tick(LEASE_TTL_MS)
            owner, epoch, retries = second, 2, 1
            emit("recovery_started", owner, epoch, True, previous_worker=first,
                 previous_epoch=1, retry_count=1)
            emit("processing_resumed", owner, epoch, True, committed=list(range(inflight)),
                 remaining=list(range(inflight, CHUNKS)), rechunked=[])
            for chunk in range(inflight, CHUNKS):
                self.call(job_id, chunk, "repeat" if chunk == inflight else "new", texts[chunk])
                emit("chunk_committed", owner, epoch, True, chunk=chunk,
                     chunks_done=chunk + 1, chunk_count=CHUNKS)
                committed[chunk] = {"text": texts[chunk], "checksum": f"c{chunk}",
                                    "epoch": epoch, "worker": owner}
            emit("recovery_completed", owner, epoch, True, chunk_count=CHUNKS)
        emit("job_completed", owner, epoch, crash, chunk_count=CHUNKS,
             transcript_chars=len(transcript))
        self.jobs[job_id] = JobSnapshot(
            job_id=job_id, state="COMPLETED", epoch=epoch, retry_count=retries, max_retries=3,
            chunk_count=CHUNKS, chunks_done=CHUNKS, progress=1.0, error=None,
            transcript=transcript, committed_chunks=committed, state_sets=["COMPLETED"])
        return seq


def synthetic_run(events: int) -> tuple[list[Record], FinalState]:
    """History records with at least ``events`` worker events, and the matching final state."""
    run = _Run()
    published = number = 0
    while published < events:
        number += 1
        published += run.job(number, crash=number % CRASH_EVERY == 0)
    start = {"kind": "run_start", "scenario": "synthetic", "seed": 0, "target": "reference",
             "settings": {"lease_ttl_ms": str(LEASE_TTL_MS)}, "workers": 1,
             "schedule": run.schedule}
    rows = [start, *run.timeline, *run.stream, {"kind": "run_end", "reason": "settled"}]
    base = run.ts_ms / 1000 + 1
    records = [{**row, "index": i, "ts": base + i / 1e6} for i, row in enumerate(rows)]
    return records, FinalState(run.jobs, {})
