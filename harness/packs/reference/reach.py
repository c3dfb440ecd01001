"""What a reference job passes, in order, so that exploration draws faults it reaches.

The core's reach model (``harness.explore.reach``) asks a target what a job
passes fresh, after a takeover and after a hand-back. The reference worker's
answers, from ``system_under_test/pipeline.py``, ``recovery.py`` and
``upload.py``:

A transcription job passes ``job.claimed``, the three ``chunking.`` points,
each chunk's three ``chunk.`` points, then assembly and completion. A
takeover passes ``recovery.started``; when the dead worker had not committed
the plan it cuts the media again (the ``chunking.`` points, but not
``recovery.verified``), else it checks the chunk files (``recovery.verified``,
then ``recovery.rechunked`` only when an uncommitted chunk's file is
damaged); then ``recovery.resumed`` and the chunks not committed. A chunk is
committed at ``chunk.committed``. Without its source, a takeover that must
cut again fails right after ``recovery.started``. A job handed back by a
graceful stop is claimed fresh: ``job.claimed``, a new cut, the chunks not
committed. A kill at ``job.completed`` leaves nothing to take over.

An upload job passes ``job.claimed``, ``upload.created`` and
``upload.started``, its parts, then the completion points. A takeover of one
started before the crash checks it against S3 (``upload.verified``), then
``recovery.resumed``; after S3 completed the object it goes straight to the
metadata. ``upload.waiting`` (a source still growing) is never promised, and
the model counts one part (the exploration's ``chunks`` for an upload).

A worker frozen past its lease is rescued by a worker held at its
``rescuer_point``; the job goes on from there. Other domain faults (a file
damaged on its own, service errors) come at a moment the clock decides.
"""

from __future__ import annotations

from harness.explore.reach import Effect, EffectKind, Path, Step, core_effect
from harness.faults import FaultSpec
from harness.packs.reference.faults.files import CorruptChunkSpec, DeleteSourceSpec
from harness.packs.reference.faults.pause_past_lease import PausePastLeaseSpec

CHUNK_STEPS = ("chunk.before_request", "chunk.transcribed.before_commit", "chunk.committed")
CUT = ("chunking.started", "chunking.split", "chunking.committed")
ASSEMBLY = ("assembly.started", "job.before_complete", "job.completed")
PART_STEPS = ("upload.part.before_upload", "upload.part.uploaded", "upload.part.committed")
COMPLETION = ("upload.before_complete", "upload.completed_in_s3", "upload.metadata_written",
              "job.completed")
AFTER_S3 = ("upload.metadata_written", "job.completed")


def _steps(points: tuple[str, ...]) -> Path:
    return tuple(Step(p) for p in points)


def _first_open(path: Path, at: int, block: tuple[str, ...]) -> int | None:
    """The first item not committed when the job was stopped at ``path[at]`` (None:
    every item is): the item in hand unless stopped at its commit, else the next one
    ahead."""
    step = path[at]
    if step.item is not None and step.point != block[-1]:
        return step.item
    ahead = [s.item for s in path[at + 1:] if s.item is not None]
    return min(ahead) if ahead else None


def effect(group: tuple[FaultSpec, ...]) -> Effect:
    """The reference faults' effects: a zombie is rescued; the rest as the core says."""
    head = group[0]
    if isinstance(head, PausePastLeaseSpec) and head.point is not None and len(group) == 1:
        return Effect(EffectKind.RESCUE, (head.point, head.occurrence),
                      resumed_at=head.rescuer_point)
    return core_effect(group)


class TranscribeJob:
    """A transcription job of ``items`` chunks; see the module docstring."""

    def __init__(self, items: int) -> None:
        self.items = max(1, items)

    def chunks_from(self, first: int | None) -> Path:
        start = self.items if first is None else first
        return tuple(Step(p, i) for i in range(start, self.items) for p in CHUNK_STEPS)

    def fresh(self) -> Path:
        return (Step("job.claimed"), *_steps(CUT), *self.chunks_from(0), *_steps(ASSEMBLY))

    def taken_over(self, path: Path, at: int, damage: tuple[FaultSpec, ...]) -> Path | None:
        if path[at].point == "job.completed":
            return ()
        first = _first_open(path, at, CHUNK_STEPS)
        gone = any(isinstance(d, DeleteSourceSpec) for d in damage)
        if "chunking.committed" in (s.point for s in path[at + 1:]):
            # no plan survived: cut again from the original, or fail without it
            if gone:
                return (Step("recovery.started"),)
            return (Step("recovery.started"), *_steps(CUT), Step("recovery.resumed"),
                    *self.chunks_from(0), *_steps(ASSEMBLY))
        # a damaged chunk is the one the kill held (when it held one), else the one drawn
        held = path[at].item
        damaged = [held if held is not None else d.chunk
                   for d in damage if isinstance(d, CorruptChunkSpec)]
        recut = first is not None and any(chunk >= first for chunk in damaged)
        return (Step("recovery.started"), Step("recovery.verified"),
                *((Step("recovery.rechunked"),) if recut and not gone else ()),
                Step("recovery.resumed"), *self.chunks_from(first), *_steps(ASSEMBLY))

    def released(self, path: Path, at: int) -> Path | None:
        if path[at].point == "job.completed":
            return ()
        return (Step("job.claimed"), *_steps(CUT),
                *self.chunks_from(_first_open(path, at, CHUNK_STEPS)), *_steps(ASSEMBLY))

    def effect(self, group: tuple[FaultSpec, ...]) -> Effect:
        return effect(group)


class UploadJob:
    """An upload job, counted as ``items`` parts; see the module docstring."""

    def __init__(self, items: int) -> None:
        self.items = max(1, items)

    def parts_from(self, first: int | None) -> Path:
        start = self.items if first is None else first
        return tuple(Step(p, i) for i in range(start, self.items) for p in PART_STEPS)

    def fresh(self) -> Path:
        return (Step("job.claimed"), Step("upload.created"), Step("upload.started"),
                *self.parts_from(0), *_steps(COMPLETION))

    def _rest(self, path: Path, at: int) -> Path:
        """What a claim of a started upload passes after checking it against S3."""
        point = path[at].point
        if point in AFTER_S3 or point == "upload.completed_in_s3":
            return _steps(AFTER_S3)  # S3 has the object: only the metadata is left
        if point in COMPLETION:
            return _steps(COMPLETION)
        return (*self.parts_from(_first_open(path, at, PART_STEPS)),
                *(s for s in path[at + 1:] if s.point in COMPLETION))

    def taken_over(self, path: Path, at: int, damage: tuple[FaultSpec, ...]) -> Path | None:
        if path[at].point == "job.completed":
            return ()
        gone = any(isinstance(d, DeleteSourceSpec) for d in damage)
        if "upload.started" in (s.point for s in path[at + 1:]):
            opened = (Step("recovery.started"), Step("upload.created"), Step("upload.started"),
                      Step("recovery.resumed"))
            return opened if gone else (*opened, *self.parts_from(0), *_steps(COMPLETION))
        rest = self._rest(path, at)
        if gone and rest and rest[0].point in PART_STEPS:
            return (Step("recovery.started"),)  # parts left to send and no file to send
        return (Step("recovery.started"), Step("upload.verified"), Step("recovery.resumed"),
                *rest)

    def released(self, path: Path, at: int) -> Path | None:
        if path[at].point == "job.completed":
            return ()
        if "upload.started" in (s.point for s in path[at + 1:]):
            return self.fresh()
        return (Step("job.claimed"), Step("upload.verified"), *self._rest(path, at))

    def effect(self, group: tuple[FaultSpec, ...]) -> Effect:
        return effect(group)

