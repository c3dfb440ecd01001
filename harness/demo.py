"""``crashlab demo``: one real crash and one real recovery, end to end.

Starts Redis, Toxiproxy, the transcription service, the worker's API and one
worker; submits a real audio job; SIGKILLs the worker while it is paused at
a chunk commit in the middle of transcription; starts a replacement; and
proves from Redis and from the transcription service's call log that the job
completed with the exact transcript and that no chunk was transcribed (as
billable work) or committed twice.
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from harness.environment import Environment, EnvironmentOptions
from harness.errors import InconclusiveError
from harness.packs_registry import load_target
from harness.procs import ProcessRegistry
from harness.runtime.process import ProcessRuntime

DEMO_SETTINGS = {"lease_ttl_ms": "1500", "heartbeat_ms": "300", "chunk_seconds": "2.0",
                 "chunk_concurrency": "2"}


@dataclass(frozen=True)
class DemoResult:
    ok: bool
    job_id: str
    transcript_exact: bool
    duplicate_commits: dict[int, int]
    duplicate_billable: dict[int, int]
    repeats_served_from_key: int
    seconds: float


def run_demo(run_dir: Path, registry: ProcessRegistry, console: Console,
             media_seconds: float = 12.0) -> DemoResult:
    started = time.monotonic()
    runtime = ProcessRuntime(run_dir, registry)
    options = EnvironmentOptions(worker_settings=DEMO_SETTINGS)
    with Environment(run_dir, load_target(), runtime, registry=registry,
                     options=options) as env:
        console.print(f"[dim]services up: redis :{env.redis.port} via toxiproxy, "
                      f"transcription {env.transcription.url}, api {env.api_url}[/]")
        worker = env.start_worker("worker-1", failpoints="chunk.committed=1*off->1*pause")
        job = env.submit(seed=2026, seconds=media_seconds)
        console.print(f"submitted job [bold]{job.job_id}[/]: {job.media_seconds:.0f} s of audio, "
                      f"{len(job.words)} words")
        hit = worker.control.wait_for_hit("chunk.committed", timeout=60)
        if hit is None:
            raise InconclusiveError("the worker never reached its second chunk commit")
        before = env.snapshot(job.job_id)
        runtime.kill(worker.handle, signal.SIGKILL)
        console.print(f"[red]SIGKILL[/] {worker.worker_id} (pid {hit.pid}) paused at "
                      f"{hit.point} of chunk {hit.chunk}: {before.chunks_done}/"
                      f"{before.chunk_count} chunks committed")
        replacement = env.start_worker("worker-1")
        console.print(f"started {replacement.worker_id}; waiting for its lease takeover")
        if not env.wait_terminal(timeout=90):
            raise InconclusiveError(f"job {job.job_id} did not finish within 90 s")
        final = env.snapshot(job.job_id)
        events = [event for _, event in env.events() if event["job_id"] == job.job_id]
        calls = env.transcription.calls()

    commits = Counter(e["data"]["chunk"] for e in events if e["event"] == "chunk_committed")
    billable = Counter(c["chunk_index"] for c in calls
                       if c["job_id"] == job.job_id and c["outcome"] == "new")
    repeats = sum(1 for c in calls if c["job_id"] == job.job_id and c["outcome"] == "repeat")
    exact = final.state == "COMPLETED" and final.transcript == job.expected_transcript
    dup_commits = {k: v for k, v in commits.items() if v != 1}
    dup_billable = {k: v for k, v in billable.items() if v != 1}
    chunks = final.chunk_count or 0
    all_chunks = set(commits) == set(range(chunks)) == set(billable)

    table = Table(title=f"job {job.job_id}", show_header=True)
    table.add_column("check")
    table.add_column("result")
    table.add_row("final state", final.state)
    table.add_row("retries (lost workers)", str(final.retry_count))
    table.add_row("transcript exact", _mark(exact))
    table.add_row("every chunk committed exactly once",
                  _mark(not dup_commits and all_chunks) + f" ({chunks} chunks)")
    table.add_row("billable transcriptions per chunk",
                  _mark(not dup_billable and all_chunks)
                  + f" ({sum(billable.values())} for {chunks} chunks; {repeats} repeat(s) "
                    "answered from the idempotency key)")
    table.add_row("recovery events",
                  ", ".join(e["event"] for e in events if e["recovery"]) or "none")
    console.print(table)
    console.print(f"transcript: [italic]{(final.transcript or '')[:120]}...[/]")
    ok = exact and not dup_commits and not dup_billable and all_chunks
    return DemoResult(ok, job.job_id, exact, dup_commits, dup_billable, repeats,
                      time.monotonic() - started)


def _mark(ok: bool) -> str:
    return "[green]yes[/]" if ok else "[red]NO[/]"
