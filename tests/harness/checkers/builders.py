"""Synthetic run histories for the checker tests: realistic, valid, easy to break.

``RunBuilder.add_job`` writes what a run of the reference worker leaves
behind for one job of ``chunks`` chunks: the submit op, worker ``w1``
claiming it at epoch 1, cutting it, committing chunks ``0..crash_after``
(each after one billable transcription call), then (when ``crash_after`` is
not None) a planned kill fault that SIGKILLs ``w1`` while it transcribes the
next chunk, ``w2`` recovering at epoch 2 (the in-flight chunk's repeated call
is answered from the idempotency cache), resuming, committing the rest and
completing. The worker's stream is copied at the end, as the runner does.

Tests mutate the raw records (``events``, ``calls``, ``timeline``) or the
snapshots (``replace_snapshot``) and build a fresh ``History``/``FinalState``
with ``history()``/``state()``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from harness.checkers import Checker, CheckResult, Expectations, run_checkers
from harness.history import FinalState, History
from harness.packs_registry import load_target
from harness.target import JobSnapshot

WORDS = ("alfa", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel")

Record = dict[str, Any]


class RunBuilder:
    def __init__(self, scenario: str = "kill-mid-chunk", seed: int = 7) -> None:
        self.run_start: Record = {"kind": "run_start", "scenario": scenario, "seed": seed,
                                  "schedule": [], "target": "reference",
                                  # the events are 7 ms apart: every takeover is after it
                                  "settings": {"lease_ttl_ms": "5"}}
        self.timeline: list[Record] = []
        self.stream: list[Record] = []
        self.snapshots: dict[str, JobSnapshot] = {}
        self.expect: dict[str, Any] = {}
        self._ts_ms = 1_700_000_000_000
        self._stream_counter = 0
        self._pid = 1000
        self._call_seq = 0
        self._seq: dict[str, int] = {}
        self._faults = 0
        self.add("process_start", name="api", role="api", pid=self._next_pid(), incarnation=1)
        self.add("process_start", name="transcription", role="service", pid=self._next_pid(),
                 incarnation=1)

    # -- raw records ---------------------------------------------------------

    def _tick(self) -> int:
        self._ts_ms += 7
        return self._ts_ms

    def _next_pid(self) -> int:
        self._pid += 1
        return self._pid

    def add(self, kind: str, **fields: Any) -> Record:
        record = {"kind": kind, **fields}
        self.timeline.append(record)
        return record

    def emit(self, job_id: str, event: str, worker: str, epoch: int, *, recovery: bool = False,
             **data: Any) -> Record:
        self._stream_counter += 1
        seq = self._seq[job_id] = self._seq.get(job_id, 0) + 1
        record = {"kind": "sut_event", "stream_id": f"{self._ts_ms}-{self._stream_counter}",
                  "event": event, "job_id": job_id, "worker_id": worker, "epoch": epoch,
                  "seq": seq, "ts_ms": self._tick(), "recovery": recovery, "data": data}
        self.stream.append(record)
        return record

    def call(self, job_id: str, chunk: int, outcome: str, text: str) -> Record:
        self._call_seq += 1
        return self.add("external_call", seq=self._call_seq,
                        idempotency_key=f"{job_id}:{chunk}", job_id=job_id, chunk_index=chunk,
                        outcome=outcome, status_code=200, text=text,
                        call_ts=self._tick() / 1000)

    def start_worker(self, name: str, incarnation: int) -> int:
        pid = self._next_pid()
        self.add("process_start", name=name, role="worker", pid=pid, incarnation=incarnation)
        return pid

    # -- one job -------------------------------------------------------------

    def add_job(self, job_id: str = "job-1", *, chunks: int = 4, crash_after: int | None = 1,
                max_retries: int = 3, words_per_chunk: int = 2) -> None:
        """One job's whole life; ``crash_after`` is the last chunk ``w1`` commits before it
        is killed (None: no crash)."""
        texts = [" ".join(WORDS[(c * words_per_chunk + w) % len(WORDS)]
                          for w in range(words_per_chunk)) for c in range(chunks)]
        transcript = " ".join(texts)
        w1, w2 = f"{job_id}.w1", f"{job_id}.w2"
        pid1 = self.start_worker(w1, 1)
        self.add("op", op="submit", job_id=job_id, expected_transcript=transcript,
                 media_seconds=chunks * words_per_chunk * 0.5,
                 chunk_seconds=words_per_chunk * 0.5, expected_chunks=chunks)
        self.emit(job_id, "job_queued", "api", 0, filename=f"{job_id}.wav", size=1234,
                  duration=chunks * words_per_chunk * 0.5, max_retries=max_retries)
        self.emit(job_id, "job_claimed", w1, 1)
        self.emit(job_id, "chunking_completed", w1, 1, chunk_count=chunks)
        committed: dict[int, dict[str, Any]] = {}
        last_by_w1 = chunks - 1 if crash_after is None else crash_after
        for chunk in range(last_by_w1 + 1):
            self.call(job_id, chunk, "new", texts[chunk])
            self.emit(job_id, "chunk_committed", w1, 1, chunk=chunk, chunks_done=chunk + 1,
                      chunk_count=chunks)
            committed[chunk] = {"text": texts[chunk], "checksum": f"c{chunk}", "epoch": 1,
                                "worker": w1}
        epoch, retries = 1, 0
        if crash_after is not None:
            self._faults += 1
            fault_id = f"f{self._faults}"
            params = {"point": "chunk.transcribed", "job": job_id, "chunk": crash_after + 1}
            self.run_start["schedule"].append(
                {"fault_id": fault_id, "fault": "kill_worker", "params": params})
            inflight = crash_after + 1
            self.call(job_id, inflight, "new", texts[inflight])
            self.add("failpoint_hit", worker=w1, point="chunk.transcribed", hit=1, job=job_id,
                     chunk=inflight, pid=pid1, action="pause")
            self.add("fault_start", fault_id=fault_id, fault="kill_worker", params=params)
            self.add("process_signal", name=w1, pid=pid1, signal="SIGKILL")
            self.add("process_exit", name=w1, pid=pid1, code=-9)
            self.add("fault_heal", fault_id=fault_id)
            self.start_worker(w2, 1)
            epoch, retries = 2, 1
            self.emit(job_id, "recovery_started", w2, 2, recovery=True, previous_worker=w1,
                      previous_epoch=1, retry_count=1)
            self.emit(job_id, "processing_resumed", w2, 2, recovery=True,
                      committed=list(range(inflight)), remaining=list(range(inflight, chunks)),
                      rechunked=[])
            for chunk in range(inflight, chunks):
                self.call(job_id, chunk, "repeat" if chunk == inflight else "new", texts[chunk])
                self.emit(job_id, "chunk_committed", w2, 2, recovery=True, chunk=chunk,
                          chunks_done=chunk + 1, chunk_count=chunks)
                committed[chunk] = {"text": texts[chunk], "checksum": f"c{chunk}", "epoch": 2,
                                    "worker": w2}
            self.emit(job_id, "recovery_completed", w2, 2, recovery=True, chunk_count=chunks)
        worker = w1 if crash_after is None else w2
        self.emit(job_id, "job_completed", worker, epoch, recovery=crash_after is not None,
                  chunk_count=chunks, transcript_chars=len(transcript))
        self.snapshots[job_id] = JobSnapshot(
            job_id=job_id, state="COMPLETED", epoch=epoch, retry_count=retries,
            max_retries=max_retries, chunk_count=chunks, chunks_done=chunks, progress=1.0,
            error=None, transcript=transcript, committed_chunks=committed,
            state_sets=["COMPLETED"], queued=0)

    # -- views for tests -----------------------------------------------------

    def events(self, job_id: str = "job-1", event: str | None = None,
               chunk: int | None = None) -> list[Record]:
        return [r for r in self.stream if r["job_id"] == job_id
                and (event is None or r["event"] == event)
                and (chunk is None or r["data"].get("chunk") == chunk)]

    def event(self, job_id: str = "job-1", event: str = "", chunk: int | None = None) -> Record:
        (found,) = self.events(job_id, event, chunk)
        return found

    def calls(self, job_id: str = "job-1", chunk: int | None = None,
              outcome: str | None = None) -> list[Record]:
        return [r for r in self.timeline if r["kind"] == "external_call"
                and r["job_id"] == job_id and (chunk is None or r["chunk_index"] == chunk)
                and (outcome is None or r["outcome"] == outcome)]

    def of_kind(self, kind: str) -> list[Record]:
        return [r for r in self.timeline if r["kind"] == kind]

    def insert_event_after(self, anchor: Record, record: Record) -> None:
        """Put ``record`` into the stream right after ``anchor``."""
        self.stream.insert(self.stream.index(anchor) + 1, record)

    def renumber(self, job_id: str = "job-1") -> None:
        """Give the job's events seq 1..n in stream order again (after inserts/removals)."""
        for seq, record in enumerate(self.events(job_id), start=1):
            record["seq"] = seq

    def replace_snapshot(self, job_id: str = "job-1", **changes: Any) -> None:
        self.snapshots[job_id] = dataclasses.replace(self.snapshots[job_id], **changes)

    def records(self) -> list[Record]:
        rows = [self.run_start, *self.timeline, *self.stream, {"kind": "run_end", "reason": "done"}]
        base = self._ts_ms / 1000 + 1
        return [{**row, "index": i, "ts": base + i / 1000} for i, row in enumerate(rows)]

    def history(self) -> History:
        return History.from_json(self.records())

    def state(self) -> FinalState:
        return FinalState(dict(self.snapshots), dict(self.expect))


def one_job(**options: Any) -> RunBuilder:
    """The standard single-job run: 4 chunks, killed after chunk 1, recovered, completed."""
    builder = RunBuilder()
    builder.add_job(**options)
    return builder


def check(checker: Checker, builder: RunBuilder,
          expectations: Expectations | None = None) -> CheckResult:
    return checker.check(builder.history(), builder.state(), expectations or Expectations())


REFERENCE_CHECKERS = list(load_target("reference").checkers())
"""What the reference pack is judged by (its ``checkers()``), in report order."""


def checker_named(name: str) -> Checker:
    (found,) = [c for c in REFERENCE_CHECKERS if c.name == name]
    return found


def check_reference(history: History, state: FinalState,
                    expectations: Expectations | None = None) -> list[CheckResult]:
    """``run_checkers`` with the reference pack's checkers."""
    return run_checkers(history, state, expectations, REFERENCE_CHECKERS)


def exhaust_retries(builder: RunBuilder, job_id: str = "job-1") -> None:
    """Turn a crashed job into one submitted with ``max_retries=0``: the recovery counts the
    lost worker as retry 1, which is past the limit, so the job fails right there."""
    started = builder.event(job_id, "recovery_started")
    builder.stream = builder.stream[:builder.stream.index(started) + 1]
    builder.events(job_id, "job_queued")[0]["data"]["max_retries"] = 0
    worker = started["worker_id"]
    reason = "lost its worker 1 times (max_retries=0)"
    builder.emit(job_id, "recovery_failed", worker, 2, recovery=True, reason=reason)
    builder.emit(job_id, "job_failed", worker, 2, recovery=True, reason=reason)
    builder.renumber(job_id)
    snap = builder.snapshots[job_id]
    kept = {c: v for c, v in snap.committed_chunks.items() if v["epoch"] == 1}
    inflight = len(kept)  # w1 had asked for it when it was killed; w2 never got that far
    builder.timeline = [r for r in builder.timeline
                        if not (r["kind"] == "external_call" and r["job_id"] == job_id
                                and (r["chunk_index"] > inflight
                                     or (r["chunk_index"] == inflight
                                         and r["outcome"] != "new")))]
    builder.replace_snapshot(job_id, state="FAILED", max_retries=0, transcript=None,
                             error=reason, committed_chunks=kept, chunks_done=len(kept),
                             progress=len(kept) / (snap.chunk_count or 1),
                             state_sets=["FAILED"])
