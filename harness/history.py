"""The run's history: one JSONL file (``history.jsonl``) the runner appends to.

Each line is one JSON object with three reserved keys, ``index`` (0, 1, 2, ...
in write order), ``ts`` (``time.time()`` when written) and ``kind``, plus the
fields of that kind. This docstring is THE schema; the runner writes exactly
these kinds and the checkers read nothing else:

    run_start        {scenario, seed, schedule, target, settings, effects,
                      recovery_limit_s}
                     ``effects`` is what the target promises of a job's side
                     effect (``at_most_once``, ``at_least_once``,
                     ``exactly_once``), ``recovery_limit_s`` how soon a crashed
                     job must finish elsewhere
                     ``schedule`` is the list of planned faults, each
                     {fault_id, fault, params}
    process_start    {name, role, pid, incarnation}
                     ``role`` is "worker", "api" or "service"
    process_signal   {name, pid, signal, delivered, sent_ts}
                     ``signal`` is "SIGKILL", "SIGSTOP", "SIGCONT" or "SIGTERM";
                     ``sent_ts``, when a runtime sent it (the entry's ``ts`` is later)
    process_exit     {name, pid, code}
    op               {op, job_id, expected_transcript, media_seconds,
                      chunk_seconds, expected_chunks}
                     ``op`` is "submit"; an upload's submit is instead
                     {op, job_id, job_kind: "upload", bucket, key, expected_size,
                      expected_sha256, growing, finishes, on_stale}: the bytes
                     its writer will have written in all, and whether the
                     writer marks the source finished; {op: "finish", job_id,
                     size} is the writer marking it finished through the API
    fault_start      {fault_id, fault, params}       ``fault`` is the kind name; a
                     Redis fault adds ``cut``, the proxies' slots it acted on
    fault_heal       {fault_id}
    fault_skipped    {fault_id, reason}              planned but did not fire
    fault_planned    {fault_id, fault, params}       a fault added to the schedule
                     while the run was going (an operator's ``kill`` or
                     ``sever`` in ``crashlab debug``); from here on it is part
                     of ``History.schedule`` like the faults of ``run_start``
    nemesis_turns    {fault_id, fault, every_s, asked, taken, fired, median_gap_s,
                      window_s}
                     a repeating fault's turns, once the nemesis stopped: taken
                     (started) against asked for by its clock (``harness.turns``)
    supervisor_restart {name, replaces, code, delay_s}
                     a worker that failed by itself (exit ``code`` > 0) started
                     again as ``name`` by the run's supervisor (``supervise_s``,
                     ``harness.supervisor``)
    failpoint_hit    {worker, point, hit, job, chunk, pid, action}
    sut_event        {stream_id, event, job_id, worker_id, epoch, seq, ts_ms,
                      recovery, data}
                     one entry of the worker's event stream, copied at the end
                     of the run; ``epoch``/``seq``/``ts_ms`` are ints,
                     ``recovery`` a bool, ``data`` an object (see
                     ``SutEventName`` for the events and their data)
    external_call    {seq, idempotency_key, job_id, chunk_index, outcome,
                      status_code, text, call_ts}
                     one line of the transcription service's call log;
                     ``outcome`` is "new" (billable work), "repeat", "fault",
                     "bad_request" or "status" (a status query about a key)
    rejected_write   {job_id, worker_id, epoch, current_epoch, state, op, reason, ts_ms}
                     a write the worker's fencing check refused (a zombie or a
                     worker past the deadline tried, and changed nothing);
                     copied from the worker's rejected-writes stream at the end
    retried_write    {job_id, worker_id, epoch, op, item, ts_ms}
                     a write that found its own effect already in place and
                     changed nothing: the retry of a command whose reply was
                     lost (``lost_reply``); copied from the worker's stream
    s3_object        {job_id, bucket, key, exists, size, sha256, etag, token,
                      first_difference, metadata_key, metadata}
                     an upload job's object as S3 holds it at the end of the
                     run (read straight from the S3 server, never through the
                     worker); ``first_difference`` is the first byte offset
                     where it differs from the bytes the writer wrote (null
                     when equal), ``metadata`` the parsed metadata object
                     at ``metadata_key`` beside it (null when absent, or when
                     the target writes none: then ``metadata_key`` is null)
    s3_call          {seq, call_ts, method, operation, part, status, refused}
                     one request of the workers to S3 as the S3 gate saw it
                     (``harness.services.s3_gate``): the S3 ``operation``
                     (UploadPart, CompleteMultipartUpload, ...), the part
                     number of an UploadPart, the HTTP status it was answered
                     with, and whether the gate refused it itself (an
                     ``s3_errors`` fault: it never reached S3); a request cut
                     or whose reply was lost on the way back still shows here
                     with the status S3 answered
    s3_uploads       {bucket, uploads, waited_s}
                     the multipart uploads still in progress at the end
                     (``uploads``: [{key, upload_id}]), after waiting up to a
                     few seconds for the worker to abort those of ended jobs
    run_end          {reason}

Field names ``index``, ``ts`` and ``kind`` are reserved (a call-log ``ts``
must be renamed before it is recorded).

``HistoryWriter`` appends (thread-safe, one flush per line);
``load_history`` reads the file back as a ``History`` of typed ``Entry``
records, with typed views (``SutEvent``, ``SubmitOp``, ...) that are parsed
once and cached.

The final state beside it, ``state.json``, is written by the runner after the
run: ``{"jobs": {job_id: JobSnapshot.to_json()}, "expect": {...}}``, where
``expect`` holds the scenario's optional expectations (parsed by
``harness.checkers.base.Expectations``). ``save_state``/``load_state`` read
and write it as a ``FinalState``.
"""

from __future__ import annotations

import gc
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import Any, TypeVar, overload

from harness.errors import CrashlabError
from harness.runfolder import HISTORY_FILE as HISTORY_FILE  # re-exported
from harness.runfolder import STATE_FILE as STATE_FILE  # re-exported
from harness.target import JobSnapshot

log = logging.getLogger(__name__)


RESERVED = frozenset({"index", "ts", "kind"})

_View = TypeVar("_View")


class HistoryError(CrashlabError):
    """A history file or entry does not follow the schema (names file, entry and field)."""


class EntryKind(StrEnum):
    RUN_START = "run_start"
    PROCESS_START = "process_start"
    PROCESS_SIGNAL = "process_signal"
    PROCESS_EXIT = "process_exit"
    OP = "op"
    FAULT_START = "fault_start"
    FAULT_HEAL = "fault_heal"
    FAULT_SKIPPED = "fault_skipped"
    FAULT_PLANNED = "fault_planned"
    NEMESIS_TURNS = "nemesis_turns"
    SUPERVISOR_RESTART = "supervisor_restart"
    FAILPOINT_HIT = "failpoint_hit"
    SUT_EVENT = "sut_event"
    EXTERNAL_CALL = "external_call"
    REJECTED_WRITE = "rejected_write"
    RETRIED_WRITE = "retried_write"
    S3_OBJECT = "s3_object"
    S3_UPLOADS = "s3_uploads"
    S3_CALL = "s3_call"
    RUN_END = "run_end"


class SutEventName(StrEnum):
    """The worker's events and their ``data``."""

    JOB_QUEUED = "job_queued"  # {filename, size, duration, max_retries}
    JOB_CLAIMED = "job_claimed"  # {}
    CHUNKING_COMPLETED = "chunking_completed"  # {chunk_count}
    CHUNK_COMMITTED = "chunk_committed"  # {chunk, chunks_done, chunk_count}
    JOB_COMPLETED = "job_completed"  # {chunk_count, transcript_chars}
    JOB_FAILED = "job_failed"  # {reason}
    JOB_CANCELLED = "job_cancelled"  # {previous_state}
    JOB_RELEASED = "job_released"  # {} graceful shutdown, no retry counted
    JOB_TIMED_OUT = "job_timed_out"  # {deadline_ms, now_ms, previous_state}; opens an epoch
    RECOVERY_STARTED = "recovery_started"  # {previous_worker, previous_epoch, retry_count}
    PROCESSING_RESUMED = "processing_resumed"  # {committed, remaining, rechunked}
    RECOVERY_COMPLETED = "recovery_completed"  # {chunk_count}
    RECOVERY_FAILED = "recovery_failed"  # {reason}
    UPLOAD_STARTED = "upload_started"  # {upload_id, bucket, key}
    PART_COMMITTED = "part_committed"  # {part, size, offset, etag, bytes_sent, parts_done}
    SOURCE_FINISHED = "source_finished"  # {size}, written by the API, not an epoch's owner
    STREAM_STALE = "stream_stale"  # {size, idle_ms, action}


class CallOutcome(StrEnum):
    NEW = "new"
    REPEAT = "repeat"
    FAULT = "fault"
    BAD_REQUEST = "bad_request"
    STATUS = "status"  # a status query about a key (never billable)


@dataclass(frozen=True)
class Entry:
    """One line of the history."""

    index: int
    ts: float
    kind: str
    fields: Mapping[str, Any]

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Entry:
        try:
            index, ts, kind = int(raw["index"]), float(raw["ts"]), str(raw["kind"])
        except (KeyError, TypeError, ValueError) as exc:
            raise HistoryError(f"history entry {dict(raw)!r} lacks a valid index/ts/kind "
                               f"({exc!r})") from exc
        rest = dict(raw)
        for key in RESERVED:
            del rest[key]
        return cls(index, ts, kind, MappingProxyType(rest))

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "ts": self.ts, "kind": self.kind, **self.fields}

    def get(self, name: str, default: Any = None) -> Any:
        return self.fields.get(name, default)

    def require(self, name: str) -> Any:
        """The field ``name``; ``HistoryError`` naming the entry if it is missing."""
        try:
            return self.fields[name]
        except KeyError:
            raise HistoryError(f"history entry {self.index} ({self.kind}) has no "
                               f"field {name!r}") from None

    def text(self, name: str) -> str:
        return str(self.require(name))

    def integer(self, name: str) -> int:
        value = self.require(name)
        try:
            return int(value)
        except (TypeError, ValueError):
            raise HistoryError(f"history entry {self.index} ({self.kind}): field {name!r} "
                               f"is {value!r}, not an integer") from None

    def optional_text(self, name: str) -> str | None:
        value = self.fields.get(name)
        return None if value is None else str(value)

    def optional_int(self, name: str) -> int | None:
        value = self.fields.get(name)
        return None if value is None else self.integer(name)


@dataclass(frozen=True)
class PlannedFault:
    """One fault of ``run_start.schedule``."""

    fault_id: str
    fault: str
    params: Mapping[str, Any]
    colour: str | None = None  # how the report draws its kind (the fault registry's)

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> PlannedFault:
        colour = raw.get("colour")
        return cls(str(raw["fault_id"]), str(raw.get("fault", "")),
                   MappingProxyType(dict(raw.get("params") or {})),
                   None if colour is None else str(colour))

    @classmethod
    def from_entry(cls, entry: Entry) -> PlannedFault:
        """A fault a ``fault_planned`` entry added to the schedule during the run."""
        return cls.from_json(entry.fields)

    def to_json(self) -> dict[str, Any]:
        return {"fault_id": self.fault_id, "fault": self.fault, "params": dict(self.params)}


@dataclass(frozen=True)
class SubmitOp:
    """A job the runner submitted (``op`` with ``op == "submit"``)."""

    index: int
    job_id: str
    expected_transcript: str | None
    media_seconds: float | None
    chunk_seconds: float | None
    expected_chunks: int | None
    kind: str = "transcribe"
    upload: UploadExpectation | None = None

    @classmethod
    def from_entry(cls, entry: Entry) -> SubmitOp:
        media, chunk = entry.get("media_seconds"), entry.get("chunk_seconds")
        kind = str(entry.get("job_kind") or "transcribe")
        upload = None
        if kind == "upload":
            upload = UploadExpectation(entry.text("bucket"), entry.text("key"),
                                       entry.integer("expected_size"),
                                       entry.text("expected_sha256"),
                                       bool(entry.get("growing", False)),
                                       bool(entry.get("finishes", True)),
                                       entry.optional_text("on_stale"))
        return cls(entry.index, entry.text("job_id"), entry.optional_text("expected_transcript"),
                   None if media is None else float(media),
                   None if chunk is None else float(chunk), entry.optional_int("expected_chunks"),
                   kind, upload)


@dataclass(frozen=True)
class UploadExpectation:
    """What an upload's submit op promises: the object and the bytes it must end up holding."""

    bucket: str
    key: str
    expected_size: int
    expected_sha256: str
    growing: bool
    finishes: bool  # the writer marks the source finished (else it goes stale)
    on_stale: str | None


@dataclass(frozen=True)
class S3Object:
    """An upload job's object at the end of the run (``s3_object``)."""

    index: int
    job_id: str
    bucket: str
    key: str
    exists: bool
    size: int | None
    sha256: str | None
    etag: str | None
    token: str | None
    first_difference: int | None
    metadata_key: str | None
    metadata: Mapping[str, Any] | None

    @classmethod
    def from_entry(cls, entry: Entry) -> S3Object:
        metadata = entry.get("metadata")
        return cls(entry.index, entry.text("job_id"), entry.text("bucket"), entry.text("key"),
                   bool(entry.require("exists")), entry.optional_int("size"),
                   entry.optional_text("sha256"), entry.optional_text("etag"),
                   entry.optional_text("token"), entry.optional_int("first_difference"),
                   entry.optional_text("metadata_key"),
                   None if metadata is None else MappingProxyType(dict(metadata)))


@dataclass(frozen=True)
class PendingUpload:
    """A multipart upload still in progress at the end of the run (from ``s3_uploads``)."""

    index: int
    bucket: str
    key: str
    upload_id: str


@dataclass(frozen=True)
class ProcessInfo:
    """A ``process_start``: one incarnation of a named process."""

    index: int
    name: str
    role: str
    pid: int
    incarnation: int

    @classmethod
    def from_entry(cls, entry: Entry) -> ProcessInfo:
        return cls(entry.index, entry.text("name"), entry.text("role"), entry.integer("pid"),
                   int(entry.get("incarnation", 0)))


@dataclass(frozen=True)
class ProcessSignal:
    """A signal the runner sent; ``role`` comes from the process's ``process_start``."""

    index: int
    name: str
    pid: int
    signal: str
    role: str | None


@dataclass(frozen=True)
class SutEvent:
    """One event of the worker's stream (``sut_event``)."""

    index: int
    stream_id: str
    event: str
    job_id: str
    worker_id: str
    epoch: int
    seq: int
    ts_ms: int
    recovery: bool
    data: Mapping[str, Any]

    @classmethod
    def from_entry(cls, entry: Entry) -> SutEvent:
        recovery = entry.get("recovery", False)
        if isinstance(recovery, str):
            recovery = recovery not in ("", "0", "false", "False")
        data = entry.get("data") or {}
        if isinstance(data, str):
            data = json.loads(data)
        return cls(entry.index, entry.text("stream_id"), entry.text("event"),
                   entry.text("job_id"), entry.text("worker_id"), entry.integer("epoch"),
                   entry.integer("seq"), entry.integer("ts_ms"), bool(recovery),
                   MappingProxyType(dict(data)))

    def data_int(self, name: str) -> int | None:
        value = self.data.get(name)
        try:
            return None if value is None else int(value)
        except (TypeError, ValueError):
            return None

    def describe(self) -> str:
        """``seq 7 (chunk_committed chunk 3 by worker w1 epoch 1)``: how witnesses name an
        event."""
        what = self.event
        if self.event == SutEventName.CHUNK_COMMITTED:
            what += f" chunk {self.data.get('chunk')}"
        return f"seq {self.seq} ({what} by worker {self.worker_id} epoch {self.epoch})"

    def brief(self) -> str:
        """``seq 7 (worker w1 epoch 1)``: the short form, when the event kind is obvious."""
        return f"seq {self.seq} (worker {self.worker_id} epoch {self.epoch})"


@dataclass(frozen=True)
class ExternalCall:
    """One call the transcription service logged (``external_call``)."""

    index: int
    seq: int
    idempotency_key: str | None
    job_id: str | None
    chunk_index: int | None
    outcome: str
    status_code: int | None
    text: str | None
    call_ts: float | None = None  # when the call reached the service (its log's ``ts``)

    @classmethod
    def from_entry(cls, entry: Entry) -> ExternalCall:
        raw_ts = entry.get("call_ts")
        return cls(entry.index, entry.integer("seq"), entry.optional_text("idempotency_key"),
                   entry.optional_text("job_id"), entry.optional_int("chunk_index"),
                   entry.text("outcome"), entry.optional_int("status_code"),
                   entry.optional_text("text"),
                   float(raw_ts) if isinstance(raw_ts, int | float) else None)


@dataclass(frozen=True)
class History(Sequence[Entry]):
    """The entries of one run, in file order, with typed views parsed once on first use."""

    entries: tuple[Entry, ...]

    @classmethod
    def from_json(cls, records: Iterable[Mapping[str, Any]]) -> History:
        with bulk():
            return cls(tuple(Entry.from_json(raw) for raw in records))

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[Entry]:
        return iter(self.entries)

    @overload
    def __getitem__(self, i: int) -> Entry: ...

    @overload
    def __getitem__(self, i: slice) -> tuple[Entry, ...]: ...

    def __getitem__(self, i: int | slice) -> Entry | tuple[Entry, ...]:
        return self.entries[i]

    @cached_property
    def by_index(self) -> Mapping[int, Entry]:
        """Each entry by its ``index`` (the writer's sequence number, not a position)."""
        return MappingProxyType({entry.index: entry for entry in self.entries})

    @cached_property
    def by_kind(self) -> Mapping[str, tuple[Entry, ...]]:
        grouped: dict[str, list[Entry]] = {}
        for entry in self.entries:
            grouped.setdefault(entry.kind, []).append(entry)
        return MappingProxyType({kind: tuple(group) for kind, group in grouped.items()})

    def of_kind(self, kind: str) -> tuple[Entry, ...]:
        return self.by_kind.get(kind, ())

    @cached_property
    def run_start(self) -> Entry | None:
        starts = self.of_kind(EntryKind.RUN_START)
        return starts[0] if starts else None

    @cached_property
    def schedule(self) -> tuple[PlannedFault, ...]:
        """The planned faults of ``run_start``, then those a ``fault_planned`` added."""
        if self.run_start is None:
            return ()
        try:
            ahead = tuple(PlannedFault.from_json(raw)
                          for raw in self.run_start.get("schedule") or ())
        except (KeyError, TypeError, AttributeError) as exc:
            raise HistoryError(f"run_start (entry {self.run_start.index}) has a malformed "
                               f"schedule: {exc!r}") from exc
        added = tuple(_parse(PlannedFault.from_entry, entry)
                      for entry in self.of_kind(EntryKind.FAULT_PLANNED))
        return ahead + added

    @cached_property
    def submits(self) -> tuple[SubmitOp, ...]:
        return tuple(_parse(SubmitOp.from_entry, entry) for entry in self.of_kind(EntryKind.OP)
                     if entry.get("op") == "submit")

    @cached_property
    def submits_by_job(self) -> Mapping[str, SubmitOp]:
        return MappingProxyType({op.job_id: op for op in self.submits})

    @cached_property
    def processes(self) -> tuple[ProcessInfo, ...]:
        return tuple(_parse(ProcessInfo.from_entry, entry)
                     for entry in self.of_kind(EntryKind.PROCESS_START))

    @cached_property
    def signals(self) -> tuple[ProcessSignal, ...]:
        roles_by_pid = {proc.pid: proc.role for proc in self.processes}
        roles_by_name = {proc.name: proc.role for proc in self.processes}
        result = []
        for entry in self.of_kind(EntryKind.PROCESS_SIGNAL):
            name, pid = entry.text("name"), entry.integer("pid")
            role = roles_by_pid.get(pid, roles_by_name.get(name))
            result.append(ProcessSignal(entry.index, name, pid, entry.text("signal"), role))
        return tuple(result)

    @cached_property
    def worker_kills(self) -> tuple[ProcessSignal, ...]:
        """Every SIGKILL sent to a process whose role is ``worker``."""
        return tuple(sig for sig in self.signals
                     if sig.signal == "SIGKILL" and sig.role == "worker")

    @cached_property
    def sut_events(self) -> tuple[SutEvent, ...]:
        return tuple(_parse(SutEvent.from_entry, entry)
                     for entry in self.of_kind(EntryKind.SUT_EVENT))

    @cached_property
    def events_by_job(self) -> Mapping[str, tuple[SutEvent, ...]]:
        """Each job's events sorted by ``seq`` (stable: history order breaks ties)."""
        grouped: dict[str, list[SutEvent]] = {}
        for event in self.sut_events:
            grouped.setdefault(event.job_id, []).append(event)
        return MappingProxyType({job: tuple(sorted(events, key=lambda e: e.seq))
                                 for job, events in grouped.items()})

    @cached_property
    def s3_objects(self) -> Mapping[str, S3Object]:
        """Each upload job's object at the end, by job id."""
        objects = (_parse(S3Object.from_entry, entry)
                   for entry in self.of_kind(EntryKind.S3_OBJECT))
        return MappingProxyType({obj.job_id: obj for obj in objects})

    @cached_property
    def pending_uploads(self) -> tuple[PendingUpload, ...] | None:
        """Multipart uploads left in progress at the end; None if nobody looked."""
        entries = self.of_kind(EntryKind.S3_UPLOADS)
        if not entries:
            return None
        found = []
        for entry in entries:
            try:
                for upload in entry.require("uploads"):
                    found.append(PendingUpload(entry.index, entry.text("bucket"),
                                               str(upload["key"]), str(upload["upload_id"])))
            except (KeyError, TypeError) as exc:
                raise HistoryError(f"history entry {entry.index} (s3_uploads) is malformed: "
                                   f"{exc!r}") from exc
        return tuple(found)

    @cached_property
    def external_calls(self) -> tuple[ExternalCall, ...]:
        return tuple(_parse(ExternalCall.from_entry, entry)
                     for entry in self.of_kind(EntryKind.EXTERNAL_CALL))


def _parse(parser: Callable[[Entry], _View], entry: Entry) -> _View:
    """``parser(entry)``, with any malformed field reported as a ``HistoryError``."""
    try:
        return parser(entry)
    except HistoryError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise HistoryError(f"history entry {entry.index} ({entry.kind}) is malformed: "
                           f"{exc!r}") from exc


def _json_default(value: object) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable: {value!r}")


class HistoryWriter:
    """Appends entries to one history file; safe to share between threads.

    The file is created (``HistoryError`` if it exists) unless ``append`` is
    true, in which case indices continue after the entries already there.
    ``clock`` stamps each entry's ``ts`` (a test writes a history at chosen times).
    """

    def __init__(self, path: Path, *, append: bool = False,
                 clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self._clock = clock
        self._lock = threading.Lock()
        self._next_index = 0
        if append and path.exists():
            self._next_index = sum(1 for line in path.read_text(encoding="utf-8").splitlines()
                                   if line.strip())
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._file = path.open("a" if append else "x", encoding="utf-8")
        except FileExistsError:
            raise HistoryError(f"history {path} already exists; each run writes a new one "
                               "(pass append=True to continue it)") from None
        self._closed = False

    def record(self, kind: str, **fields: Any) -> Entry:
        """Append one entry of ``kind`` (stamped with ``ts`` and the next ``index``)."""
        clash = RESERVED.intersection(fields)
        if clash:
            raise HistoryError(f"{kind} entry uses reserved field name(s) {sorted(clash)}")
        with self._lock:
            if self._closed:
                raise HistoryError(f"history {self.path} is closed; cannot record {kind}")
            entry = Entry(self._next_index, self._clock(), str(kind), MappingProxyType(fields))
            line = json.dumps(entry.to_json(), default=_json_default, separators=(",", ":"))
            self._file.write(line + "\n")
            self._file.flush()
            self._next_index += 1
        return entry

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._file.close()

    def __enter__(self) -> HistoryWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


@contextmanager
def bulk() -> Iterator[None]:
    """Pause the cyclic garbage collector while a history is built or checked.

    A history of 100k entries is a million small objects, none in a reference
    cycle; collector passes over them as they are made cost more than making
    them (and grow with the heap, so the total is no longer linear in its size).
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def load_history(path: Path) -> History:
    """Read a history file; a torn last line (the runner died mid-write) is dropped with a
    warning, any other malformed line is a ``HistoryError`` naming the file and line."""
    every_line = path.read_text(encoding="utf-8").splitlines()
    lines = [line for line in every_line if line.strip()]
    with bulk():
        try:  # the usual case, in one pass: every line one JSON object
            parsed = json.loads("[" + ",".join(lines) + "]")
        except json.JSONDecodeError:
            parsed = None
        if (isinstance(parsed, list) and len(parsed) == len(lines)
                and all(isinstance(raw, dict) for raw in parsed)):
            return History.from_json(parsed)
        return _load_lines(path, every_line)


def _load_lines(path: Path, lines: list[str]) -> History:
    """``load_history`` line by line (``lines``: the file's, blank ones included, so
    numbers match): finds the torn last line or names the bad one."""
    records: list[Mapping[str, Any]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as exc:
            if number == len(lines):
                log.warning("%s: dropping the torn last line %d (%s)", path, number, exc)
                break
            raise HistoryError(f"{path}:{number} is not valid JSON ({exc})") from exc
        if not isinstance(raw, dict):
            raise HistoryError(f"{path}:{number} is not a JSON object")
        records.append(raw)
    return History.from_json(records)


@dataclass(frozen=True)
class FinalState:
    """Every job's final snapshot plus the scenario's raw expectations."""

    jobs: Mapping[str, JobSnapshot]
    expect: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"jobs": {job_id: snap.to_json() for job_id, snap in self.jobs.items()},
                "expect": dict(self.expect)}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> FinalState:
        jobs = {str(job_id): snapshot_from_json(snap)
                for job_id, snap in (raw.get("jobs") or {}).items()}
        return cls(MappingProxyType(jobs), MappingProxyType(dict(raw.get("expect") or {})))


def snapshot_from_json(raw: Mapping[str, Any]) -> JobSnapshot:
    """The inverse of ``JobSnapshot.to_json``; ``HistoryError`` when it is malformed."""
    try:
        return JobSnapshot.from_json(raw)
    except (KeyError, TypeError, ValueError) as exc:
        raise HistoryError(f"job snapshot {raw.get('job_id')!r} is malformed: {exc!r}") from exc


def save_state(path: Path, jobs: Mapping[str, JobSnapshot] | Iterable[JobSnapshot],
               expect: Mapping[str, Any] | None = None) -> FinalState:
    """Write ``state.json`` atomically (temp file, then rename); returns what was written."""
    by_id = dict(jobs) if isinstance(jobs, Mapping) else {snap.job_id: snap for snap in jobs}
    state = FinalState(MappingProxyType(by_id), MappingProxyType(dict(expect or {})))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(state.to_json(), indent=2, sort_keys=True,
                              default=_json_default) + "\n", encoding="utf-8")
    tmp.replace(path)
    return state


def load_state(path: Path) -> FinalState:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise HistoryError(f"{path} is not valid JSON ({exc})") from exc
    if not isinstance(raw, dict):
        raise HistoryError(f"{path} is not a JSON object")
    return FinalState.from_json(raw)
