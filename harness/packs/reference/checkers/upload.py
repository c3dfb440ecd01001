"""Upload jobs: the object is the source, byte for byte, made of the committed parts.

upload_byte_exact
    For every submitted upload job (``op`` submit with ``job_kind: upload``):

    * each part number is committed at most once (``part_committed``);
    * a COMPLETED job's object exists in S3 (``s3_object``) and equals the
      bytes its writer wrote (size, SHA-256; the witness names the first byte
      that differs and the part it falls in);
    * its committed parts are contiguous: numbered 1..n, the first at offset
      0, each starting where the one before ends, all but the last of the
      same size, their sizes adding up to the object's;
    * the object's ETag is the multipart ETag of exactly those parts (MD5 of
      their MD5s, then ``-n``), so S3 assembled the object from them and
      nothing else;
    * the metadata object beside it (when the worker writes one) names the
      same size and ETag, and the job's checkpoint was cleaned up;
    * no multipart upload is left in progress (``s3_uploads``) for the key of
      a job that ended, nor for a key no job owns: no orphan uploads.

    A run with upload jobs but no record of what S3 held is unknown. Runs
    without upload jobs are valid here.
"""

from __future__ import annotations

import hashlib

from harness.checkers.base import CheckResult, Expectations, Findings, plural
from harness.checkers.registry import checker
from harness.history import (
    FinalState,
    History,
    S3Object,
    SubmitOp,
    SutEvent,
    SutEventName,
    UploadExpectation,
)
from harness.target import JobSnapshot

COMPLETED = "COMPLETED"
TERMINAL = ("COMPLETED", "FAILED", "TIMED_OUT", "CANCELLED")


def multipart_etag(etags: list[str]) -> str:
    """S3's ETag of an object assembled from parts with these ETags, in order."""
    digests = b"".join(bytes.fromhex(etag.strip('"')) for etag in etags)
    return f'"{hashlib.md5(digests).hexdigest()}-{len(etags)}"'


def part_of(offset: int, parts: list[SutEvent]) -> str:
    """Which committed part holds byte ``offset``, in words."""
    for event in parts:
        start, size = event.data_int("offset") or 0, event.data_int("size") or 0
        if start <= offset < start + size:
            return f" (in part {event.data_int('part')}, {event.describe()})"
    return ""


@checker(suite="reference", rank=150)
class UploadByteExact:
    name = "upload_byte_exact"

    def check(self, history: History, state: FinalState,
              expectations: Expectations) -> CheckResult:
        found = Findings(self.name)
        uploads = [op for op in history.submits if op.kind == "upload" and op.upload]
        if not uploads:
            return found.not_applicable("no upload jobs in this run")
        pending = history.pending_uploads
        if pending is None:
            found.unknown("the run has upload jobs but no record of the multipart uploads "
                          "left in S3 (no s3_uploads entry)")
        keys = {op.upload.key: op for op in uploads if op.upload is not None}
        completed = 0
        for op in uploads:
            assert op.upload is not None
            snap = state.jobs.get(op.job_id)
            parts = self._parts(found, op.job_id, history.events_by_job.get(op.job_id, ()))
            if snap is None:
                continue  # jobs_terminal reports a job missing from the final state
            if snap.state == COMPLETED:
                completed += 1
                seen = history.s3_objects.get(op.job_id)
                if seen is None:
                    found.unknown(f"upload job {op.job_id} is COMPLETED but the history has no "
                                  "s3_object entry saying what S3 holds")
                else:
                    self._completed(found, op, op.upload, snap, seen, parts)
            if snap.state in TERMINAL:
                for upload in pending or ():
                    if upload.key == op.upload.key:
                        found.invalid(f"upload job {op.job_id} ended {snap.state} but "
                                      f"multipart upload {upload.upload_id} of "
                                      f"s3://{upload.bucket}/{upload.key} is still in progress "
                                      "(an orphan upload)")
        for upload in pending or ():
            if upload.key not in keys:
                found.invalid(f"multipart upload {upload.upload_id} of s3://{upload.bucket}/"
                              f"{upload.key} is in progress but no upload job owns that key")
        return found.result(f"{plural(completed, 'completed upload')} byte-exact from "
                            f"contiguous committed parts; no multipart upload left over for "
                            f"{plural(len(uploads), 'upload job')}")

    def _parts(self, found: Findings, job_id: str,
               events: tuple[SutEvent, ...]) -> list[SutEvent]:
        """The job's part commits in part order; a part committed twice is a violation."""
        by_part: dict[int, SutEvent] = {}
        for event in events:
            if event.event != SutEventName.PART_COMMITTED:
                continue
            number = event.data_int("part")
            if number is None:
                found.invalid(f"upload job {job_id}: {event.describe()} names no part number")
                continue
            earlier = by_part.get(number)
            if earlier is not None:
                found.invalid(f"upload job {job_id}: part {number} was committed twice: "
                              f"{earlier.describe()} and {event.describe()}")
                continue
            by_part[number] = event
        return [by_part[number] for number in sorted(by_part)]

    def _completed(self, found: Findings, op: SubmitOp, want: UploadExpectation,
                   snap: JobSnapshot, seen: S3Object, parts: list[SutEvent]) -> None:
        job, where = op.job_id, f"s3://{seen.bucket}/{seen.key}"
        if not seen.exists:
            found.invalid(f"upload job {job} is COMPLETED but {where} does not exist")
            return
        if seen.size != want.expected_size or seen.sha256 != want.expected_sha256:
            detail = ""
            if seen.first_difference is not None:
                detail = (f"; the first byte that differs is at offset {seen.first_difference}"
                          + part_of(seen.first_difference, parts))
            found.invalid(f"upload job {job}: {where} holds {seen.size} bytes (sha256 "
                          f"{str(seen.sha256)[:12]}) but the writer wrote {want.expected_size} "
                          f"(sha256 {want.expected_sha256[:12]}){detail}")
        self._contiguous(found, job, parts, seen.size or 0)
        etags = [str(event.data.get("etag")) for event in parts]
        if parts and seen.etag != multipart_etag(etags):
            committed = plural(len(parts), "committed part")
            found.invalid(f"upload job {job}: {where} has ETag {seen.etag}, not the multipart "
                          f"ETag {multipart_etag(etags)} of its {committed}: S3 assembled it "
                          "from other parts")
        if seen.metadata is not None:
            if seen.metadata.get("size") != seen.size or seen.metadata.get("etag") != seen.etag:
                found.invalid(f"upload job {job}: the metadata object beside {where} says size "
                              f"{seen.metadata.get('size')} and ETag "
                              f"{seen.metadata.get('etag')}, the object has {seen.size} and "
                              f"{seen.etag}")
        elif seen.metadata_key is not None:
            found.invalid(f"upload job {job} is COMPLETED but no metadata object was written "
                          f"beside {where}")
        if snap.upload is not None and snap.upload.get("parts"):
            found.invalid(f"upload job {job} is COMPLETED but its checkpoint still holds "
                          f"{plural(len(snap.upload['parts']), 'part')}: not cleaned up")

    def _contiguous(self, found: Findings, job: str, parts: list[SutEvent], size: int) -> None:
        if not parts:
            found.invalid(f"upload job {job} is COMPLETED but no part_committed event records "
                          "any part")
            return
        numbers = [event.data_int("part") for event in parts]
        if numbers != list(range(1, len(parts) + 1)):
            found.invalid(f"upload job {job}: committed part numbers are {numbers}, not "
                          f"1..{len(parts)}")
        end = 0
        first_size = parts[0].data_int("size")
        for position, event in enumerate(parts):
            offset, length = event.data_int("offset"), event.data_int("size")
            if offset != end:
                found.invalid(f"upload job {job}: part {event.data_int('part')} starts at byte "
                              f"{offset}, but the parts before it end at byte {end} "
                              f"({event.describe()})")
            if length is None:
                found.invalid(f"upload job {job}: {event.describe()} carries no size")
                return
            if position < len(parts) - 1 and length != first_size:
                found.invalid(f"upload job {job}: part {event.data_int('part')} has "
                              f"{length} bytes, the first part {first_size}: only the last "
                              "part may be shorter")
            end = (offset or 0) + length
        if end != size:
            found.invalid(f"upload job {job}: the committed parts cover bytes 0..{end}, the "
                          f"object has {size}")
