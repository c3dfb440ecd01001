"""What ``crashlab debug`` shows at its prompt, as rich tables.

Pure presentation: each function takes data the session gathered (worker
rows, a job's inspection or snapshot, the event stream, the service's call
log) and returns or prints tables. Nothing here talks to a process or to
Redis, so the session decides what is read and when.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from harness.target import JobInspection, JobSnapshot

PROMPT = "(crashlab) "


@dataclass(frozen=True)
class WorkerRow:
    """One line of ``where``: a worker incarnation and, if any, one job it holds."""

    worker_id: str
    pid: int | None
    state: str  # "paused", "running", "dead (exit -9)", "no answer"
    at: str  # where it is paused and why ("chunk.committed hit 2, break b1"), or ""
    job: str | None = None
    chunk: int | None = None
    epoch: int | None = None
    phase: str | None = None
    lease: str = ""  # "w1|1, 812 ms left"


def _text(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    return str(value)


def _short(value: object, width: int = 12) -> str:
    text = _text(value)
    return text if len(text) <= width else text[:width - 1] + "…"


def where_table(rows: Sequence[WorkerRow], *, media: bool = True) -> Table:
    """Every worker in a row; ``media`` adds the reference pack's chunk, epoch, phase and
    lease of the job it holds."""
    table = Table(title="workers", show_header=True, header_style="bold", title_justify="left")
    columns = ("worker", "pid", "state", "stopped at", "job")
    for column in columns + (("chunk", "epoch", "phase", "lease") if media else ()):
        table.add_column(column)
    for row in rows:
        colour = {"paused": "yellow", "running": "green"}.get(row.state, "red")
        cells = [row.worker_id, _text(row.pid), f"[{colour}]{row.state}[/]", row.at or "-",
                 _text(row.job)]
        if media:
            cells += [_text(row.chunk), _text(row.epoch), _text(row.phase), row.lease or "-"]
        table.add_row(*cells)
    return table


def jobs_table(jobs: Sequence[JobSnapshot], leases: Mapping[str, str], *,
               media: bool = True) -> Table:
    """Every job in a row; ``media`` adds the reference pack's epoch, chunks and lease,
    otherwise the queue's own word for the state and the keys holding the job."""
    table = Table(title="jobs", show_header=True, header_style="bold", title_justify="left")
    columns = (("job", "state", "epoch", "retries", "chunks", "lease", "error") if media else
               ("job", "state", "native", "retries", "held by", "error"))
    for column in columns:
        table.add_column(column, overflow="fold")
    for job in jobs:
        colour = {"COMPLETED": "green", "PROCESSING": "yellow", "QUEUED": "white"}.get(
            job.state, "red")
        state = f"[{colour}]{job.state}[/]"
        retries = f"{job.retry_count}/{job.max_retries}"
        if media:
            table.add_row(job.job_id, state, str(job.epoch), retries,
                          f"{job.chunks_done}/{_text(job.chunk_count)}",
                          leases.get(job.job_id) or "-", _text(job.error))
        else:
            table.add_row(job.job_id, state, _text(job.native_state), retries,
                          ", ".join(job.state_sets) or "-", _text(job.error))
    return table


def lease_text(holder: str | None, ttl_ms: int | None) -> str:
    if holder is None:
        return "none"
    return f"{holder}, {ttl_ms} ms left" if ttl_ms is not None and ttl_ms >= 0 else holder


def inspection_tables(job: JobInspection) -> list[Table]:
    """The job record, its state indexes and lease, its plan and committed chunks."""
    record = Table(title=f"job {job.job_id}  ({job.keys.get('job', '')})", show_header=True,
                   header_style="bold", title_justify="left")
    record.add_column("field")
    record.add_column("value", overflow="fold")
    for name in sorted(job.fields):
        record.add_row(name, job.fields[name])
    record.add_row("[bold]lease[/]", lease_text(job.lease_holder, job.lease_ttl_ms))
    indexes = Table(title="indexes holding the job", show_header=True, header_style="bold",
                    title_justify="left")
    indexes.add_column("key")
    indexes.add_column("how")
    for key, how in sorted(job.indexes.items()):
        indexes.add_row(key, how)
    if not job.indexes:
        indexes.add_row("[red](none)[/]", "the job is in no index")
    chunks = Table(title=f"chunks: {len(job.chunks)} committed of {len(job.plan) or '?'} "
                         f"planned  ({job.keys.get('chunks', '')})",
                   show_header=True, header_style="bold", title_justify="left")
    for column in ("chunk", "committed", "text", "epoch", "worker", "checksum"):
        chunks.add_column(column)
    for index in sorted(set(job.plan) | set(job.chunks)):
        done = job.chunks.get(index)
        planned = job.plan.get(index, {})
        checksum = (done or planned).get("checksum")
        if done is None:
            chunks.add_row(str(index), "[dim]no[/]", "-", "-", "-", _short(checksum))
        else:
            chunks.add_row(str(index), "[green]yes[/]", _text(done.get("text")),
                           _text(done.get("epoch")), _text(done.get("worker")), _short(checksum))
    return [record, indexes, chunks]


MEDIA_FIELDS = frozenset({"epoch", "chunk_count", "chunks_done", "progress", "transcript",
                          "committed_chunks", "upload"})
"""Snapshot fields only the reference pack's media and upload jobs fill in."""


def snapshot_tables(job: JobSnapshot) -> list[Table]:
    """For a target that cannot ``inspect``: what its snapshot says (a pack's own
    ``kind`` of job leaves out the media fields, and the committed chunks)."""
    media = job.kind in ("transcribe", "upload")
    record = Table(title=f"job {job.job_id}", show_header=True, header_style="bold",
                   title_justify="left")
    record.add_column("field")
    record.add_column("value", overflow="fold")
    for name, value in job.to_json().items():
        if name != "committed_chunks" and (media or name not in MEDIA_FIELDS):
            record.add_row(name, _text(value))
    if not media:
        return [record]
    chunks = Table(title=f"committed chunks ({len(job.committed_chunks)})", show_header=True,
                   header_style="bold", title_justify="left")
    chunks.add_column("chunk")
    chunks.add_column("result", overflow="fold")
    for index, result in sorted(job.committed_chunks.items()):
        chunks.add_row(str(index), _text(result))
    return [record, chunks]


def events_table(events: Sequence[tuple[str, dict[str, Any]]], limit: int,
                 job_id: str | None) -> Table:
    """The last ``limit`` events (of ``job_id``, if given), oldest first."""
    chosen = [e for _, e in events if job_id is None or e.get("job_id") == job_id][-limit:]
    scope = f"job {job_id}" if job_id else "all jobs"
    table = Table(title=f"last {len(chosen)} events ({scope})", show_header=True,
                  header_style="bold", title_justify="left")
    for column in ("seq", "event", "worker", "epoch", "recovery", "data"):
        table.add_column(column, overflow="fold")
    for event in chosen:
        table.add_row(_text(event.get("seq")), _text(event.get("event")),
                      _text(event.get("worker_id")), _text(event.get("epoch")),
                      "yes" if event.get("recovery") else "", _text(event.get("data") or ""))
    return table


def calls_table(calls: Sequence[dict[str, Any]], limit: int) -> Table:
    """The transcription service's last ``limit`` calls: the billable work so far."""
    chosen = list(calls)[-limit:]
    new = sum(1 for c in calls if c.get("outcome") == "new")
    table = Table(title=f"last {len(chosen)} of {len(calls)} external calls ({new} billable)",
                  show_header=True, header_style="bold", title_justify="left")
    for column in ("seq", "job", "chunk", "idempotency key", "outcome", "status", "text"):
        table.add_column(column, overflow="fold")
    for call in chosen:
        outcome = _text(call.get("outcome"))
        colour = {"new": "green", "repeat": "yellow", "fault": "red"}.get(outcome, "white")
        table.add_row(_text(call.get("seq")), _text(call.get("job_id")),
                      _text(call.get("chunk_index")), _text(call.get("idempotency_key")),
                      f"[{colour}]{outcome}[/]", _text(call.get("status_code")),
                      _text(call.get("text")))
    return table


def ledger_table(lines: Sequence[dict[str, Any]], limit: int) -> Table:
    """The effects ledger's last ``limit`` lines: attempts begun and effects applied."""
    chosen = list(lines)[-limit:]
    applied = sum(1 for line in lines if line.get("what") != "start")
    table = Table(title=f"last {len(chosen)} of {len(lines)} ledger lines ({applied} effects)",
                  show_header=True, header_style="bold", title_justify="left")
    for column in ("job", "what", "worker", "pid"):
        table.add_column(column, overflow="fold")
    for line in chosen:
        what = _text(line.get("what"))
        table.add_row(_text(line.get("job")), f"[{'dim' if what == 'start' else 'green'}]"
                      f"{what}[/]", _text(line.get("worker")), _text(line.get("pid")))
    return table


def help_table(commands: Iterable[tuple[str, str]]) -> Table:
    table = Table(title="commands", show_header=False, title_justify="left", box=None)
    table.add_column("command", style="bold")
    table.add_column("does")
    for usage, does in commands:
        table.add_row(escape(usage), escape(does))
    return table


def show(console: Console, tables: Iterable[Table]) -> None:
    for table in tables:
        console.print(table)
