"""counters_agree: the final state's counters agree with what they count.

A write applied twice (a retry after a lost reply that is not idempotent) can
leave a counter that says more than what it counts, while every record it
counts is there once. Per job of the final state:

* transcription: ``chunks_done`` equals the number of committed chunks, and
  ``progress`` equals ``chunks_done / chunk_count`` (1 for a COMPLETED job);
* upload, while its checkpoint is kept: ``bytes_sent`` equals the sum of the
  committed parts' sizes, ``parts_done`` their number, and ``next_part`` the
  part after the last; once COMPLETED (the parts are cleaned up), ``bytes_sent``
  equals the finished size and ``progress`` is 1.

A run whose snapshots carry no counters (another pack) is not applicable.
"""

from __future__ import annotations

from typing import Any

from harness.checkers.base import CheckResult, Expectations, Findings, plural
from harness.checkers.registry import checker
from harness.history import FinalState, History
from harness.target import JobSnapshot

COMPLETED = "COMPLETED"
TOLERANCE = 1e-6  # progress is stored as a decimal string of a float division


@checker(suite="reference", rank=95)
class CountersAgree:
    name = "counters_agree"

    def check(self, history: History, state: FinalState,
              expectations: Expectations) -> CheckResult:
        found = Findings(self.name)
        judged = 0
        for job_id, snap in state.jobs.items():
            if snap.kind == "upload" and snap.upload is not None:
                judged += 1
                _upload(found, job_id, snap, snap.upload)
            elif snap.kind == "transcribe" and snap.chunk_count is not None:
                judged += 1
                _transcription(found, job_id, snap, snap.chunk_count)
        if not judged:
            return found.not_applicable("no job's final state has chunk or part counters")
        return found.result(f"the counters of {plural(judged, 'job')} agree with the chunks "
                            "and parts they count")


def _transcription(found: Findings, job_id: str, snap: JobSnapshot, count: int) -> None:
    committed = len(snap.committed_chunks)
    if snap.chunks_done != committed:
        found.invalid(f"job {job_id}: chunks_done is {snap.chunks_done} but "
                      f"{plural(committed, 'chunk is', 'chunks are')} committed "
                      f"({sorted(snap.committed_chunks)})")
    want = 1.0 if snap.state == COMPLETED else (snap.chunks_done / count if count else 0.0)
    if abs(snap.progress - want) > TOLERANCE:
        found.invalid(f"job {job_id}: progress is {snap.progress} but chunks_done "
                      f"{snap.chunks_done} of chunk_count {count} makes {want:g}")


def _upload(found: Findings, job_id: str, snap: JobSnapshot, upload: dict[str, Any]) -> None:
    parts: dict[int, dict[str, Any]] = upload.get("parts") or {}
    sent = _number(upload.get("bytes_sent"))
    if parts:
        total = sum(int(part.get("size", 0)) for part in parts.values())
        if sent != total:
            found.invalid(f"job {job_id}: bytes_sent is {sent} but its "
                          f"{plural(len(parts), 'committed part')} hold {total} bytes")
        done = _number(upload.get("parts_done"))
        if done is not None and done != len(parts):
            found.invalid(f"job {job_id}: parts_done is {done} but "
                          f"{plural(len(parts), 'part is', 'parts are')} committed")
        following = _number(upload.get("next_part"))
        if following is not None and following != max(parts) + 1:
            found.invalid(f"job {job_id}: next_part is {following} but the last committed "
                          f"part is {max(parts)}")
    elif snap.state == COMPLETED:
        finished = _number(upload.get("finished_size"))
        if finished is not None and sent != finished:
            found.invalid(f"job {job_id} is COMPLETED with bytes_sent {sent} but its source "
                          f"was finished at {finished} bytes")
        if abs(snap.progress - 1.0) > TOLERANCE:
            found.invalid(f"job {job_id} is COMPLETED with progress {snap.progress}")


def _number(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None
