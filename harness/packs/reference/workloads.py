"""The reference worker's generated workloads (``crashlab explore --workloads``).

Transcribe jobs: 1 to ``MAX_JOBS`` jobs, each of 1 to ``MAX_CHUNKS`` chunks
whose last chunk is whole or half as long (the media is made of half-second
words, ``harness.audio``), 1 to ``MAX_CHUNK_CONCURRENCY`` chunk requests
of a job in flight at once (``chunk_concurrency``) and 1 to
``MAX_JOB_CONCURRENCY`` jobs a worker runs at once (``concurrency``; one half the
time). Upload jobs: sources of
0 bytes up to ``MAX_PARTS`` parts, each on a part boundary or one byte either
side of it, written at once or growing. How many workers run them is the
schedule's draw (``explore --max-workers``).

Both kinds draw deadlines too: none, or one of ``DEADLINES_S`` for the last
jobs submitted (never the first: the faults count on the jobs without one), short
enough that it may pass while the job still waits in the queue behind the
workers' other jobs, or behind a worker that died with one. Transcribe jobs
draw how the transcription service behaves (the scenario's ``service`` block):
idempotency keys honoured or ignored, its status endpoint answered or not.

Every draw shrinks towards the smallest workload: one job, one chunk (an
empty upload), one request at a time, a source written at once, no deadline,
a service that honours keys and answers its status endpoint. Zero-length
media is not drawn: the worker's API refuses it (400 "the uploaded file is
empty"), so it never becomes a job to crash.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from hypothesis import strategies as st

from harness.audio import SEGMENT_SECONDS
from harness.errors import ScenarioError
from harness.explore.workloads import DrawnWorkload
from harness.scenario import ServiceSpec, Workload

MAX_JOBS = 8
MAX_CHUNKS = 40
MAX_CHUNK_CONCURRENCY = 4
MAX_JOB_CONCURRENCY = 3
MAX_PARTS = 20
LONG_JOB = 10
"""A job of more chunks than this is labelled long in the spread."""
DEADLINES_S = (0.3, 1.0, 3.0)
"""The deadlines drawn: a few of the exploration's short jobs take longer than the first,
the queue behind them longer than the last."""
# what a drawn workload replaces of the base scenario's
_DRAWN = frozenset({"jobs", "media_seconds", "size_bytes", "media_seconds_per_job",
                    "size_bytes_per_job", "growing", "grow_steps", "grow_interval_ms",
                    "timeout_s_per_job"})
# (how many of the last jobs, their deadline), one workload in three; None, no
# deadline, comes first
DEADLINES = st.sampled_from([False, False, True]).flatmap(
    lambda dated: st.tuples(st.integers(1, MAX_JOBS - 1), st.sampled_from(DEADLINES_S))
    if dated else st.none())
# one job at a time half the time: only then is every worker sure to hold a job of its own,
# which a fault on one worker needs (``harness.explore.strategies``)
JOB_CONCURRENCY = st.sampled_from([1, *range(1, MAX_JOB_CONCURRENCY + 1)])
SERVICES = st.builds(lambda keys, status: ServiceSpec(idempotency_keys=keys,
                                                      status_endpoint=status),
                     st.sampled_from(["honoured", "ignored"]), st.booleans().map(lambda b: not b))


def workloads(base: Workload, settings: Mapping[str, str]) -> st.SearchStrategy[DrawnWorkload]:
    """The workloads drawn in place of ``base`` (its kind and retries kept, and its
    deadline: deadlines are drawn only where it has none)."""
    if base.kind == "upload":
        return upload_workloads(base, int(settings["upload_part_bytes"]))
    if base.kind == "transcribe":
        return transcribe_workloads(base, float(settings["chunk_seconds"]))
    raise ScenarioError(f"workload.kind: the reference worker runs transcribe and upload "
                        f"jobs, not {base.kind!r}")


def _kept(base: Workload) -> dict[str, Any]:
    return base.model_dump(exclude_unset=True, exclude=set(_DRAWN))


def _deadlines(base: Workload, jobs: int, drawn: tuple[int, float] | None) -> dict[str, Any]:
    """The workload's ``timeout_s_per_job`` for ``drawn`` (the last ``count`` jobs, at most
    all but the first, get ``seconds``); none for a single job, or where ``base`` has a
    deadline of its own."""
    if drawn is None or jobs < 2 or base.timeout_s is not None:
        return {}
    count, seconds = min(drawn[0], jobs - 1), drawn[1]
    return {"timeout_s_per_job": [None] * (jobs - count) + [seconds] * count}


def transcribe_workloads(base: Workload,
                         chunk_seconds: float) -> st.SearchStrategy[DrawnWorkload]:
    """Jobs of 1..``MAX_CHUNKS`` chunks of ``chunk_seconds``, the last whole or partial."""
    segments = round(chunk_seconds / SEGMENT_SECONDS)
    if segments < 1 or not math.isclose(segments * SEGMENT_SECONDS, chunk_seconds):
        raise ScenarioError(f"settings.chunk_seconds: {chunk_seconds} is not a multiple of "
                            f"the media's {SEGMENT_SECONDS} s words; generated workloads "
                            f"need chunks of whole words")
    # a partial last chunk is one word short of whole: only a chunk of two words or more
    partial = st.booleans() if segments > 1 else st.just(False)
    # short jobs as often as long ones (a uniform draw over 1-40 would make most jobs
    # long, and slow), every length reachable
    chunks = st.integers(1, LONG_JOB + 2) | st.integers(1, MAX_CHUNKS)
    job = st.tuples(chunks, partial)

    def build(jobs: list[tuple[int, bool]], chunk_concurrency: int, concurrency: int,
              deadlines: tuple[int, float] | None, service: ServiceSpec) -> DrawnWorkload:
        media = [chunks * chunk_seconds - (SEGMENT_SECONDS if short else 0.0)
                 for chunks, short in jobs]
        workload = Workload.model_validate({**_kept(base), "kind": "transcribe",
                                            "media_seconds_per_job": media,
                                            **_deadlines(base, len(jobs), deadlines)})
        shapes = tuple(("partial last chunk" if short else "whole last chunk")
                       + (f", over {LONG_JOB} chunks" if chunks > LONG_JOB else "")
                       for chunks, short in jobs)
        return DrawnWorkload(workload, tuple(chunks for chunks, _ in jobs),
                             {"chunk_concurrency": str(chunk_concurrency),
                              "concurrency": str(concurrency)}, shapes, service)

    return st.builds(build, st.lists(job, min_size=1, max_size=MAX_JOBS),
                     st.integers(1, MAX_CHUNK_CONCURRENCY), JOB_CONCURRENCY, DEADLINES, SERVICES)


def upload_workloads(base: Workload, part_bytes: int) -> st.SearchStrategy[DrawnWorkload]:
    """Sources of 0..``MAX_PARTS`` parts of ``part_bytes``, on a boundary or a byte off."""
    # (whole parts, bytes past them): 0 parts and 0 bytes is the empty source
    # no part, one, two as often as any count up to MAX_PARTS: the boundaries a worker's
    # first and last part meet
    parts = st.sampled_from([0, 1, 2]) | st.integers(0, MAX_PARTS)
    size = st.tuples(parts, st.sampled_from([0, 1, -1]))
    growth = st.none() | st.tuples(st.integers(1, 6), st.integers(20, 200))

    def build(sizes: list[tuple[int, int]], grows: tuple[int, int] | None,
              deadlines: tuple[int, float] | None) -> DrawnWorkload:
        bytes_ = [max(0, parts * part_bytes + off) for parts, off in sizes]
        grown: dict[str, Any] = {} if grows is None else {
            "growing": True, "grow_steps": grows[0], "grow_interval_ms": grows[1]}
        workload = Workload.model_validate({**_kept(base), "kind": "upload",
                                            "size_bytes_per_job": bytes_, **grown,
                                            **_deadlines(base, len(sizes), deadlines)})
        shapes = tuple(_upload_shape(parts, off) + (", growing" if grows else "")
                       for parts, off in sizes)
        return DrawnWorkload(workload, tuple(max(1, math.ceil(n / part_bytes)) for n in bytes_),
                             {}, shapes)

    return st.builds(build, st.lists(size, min_size=1, max_size=MAX_JOBS), growth, DEADLINES)


def _upload_shape(parts: int, off: int) -> str:
    """Where a source of ``parts`` whole parts and ``off`` bytes past them ends."""
    if parts == 0:
        return "empty" if off <= 0 else "1 byte"
    whole = "one part" if parts == 1 else "whole parts"
    return {0: whole, 1: f"{whole} + 1 byte", -1: f"{whole} - 1 byte"}[off]
