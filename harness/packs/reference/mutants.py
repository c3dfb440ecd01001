"""Planted recovery bugs: copies of the reference worker with one realistic defect each.

Each mutant is a small patch a real team could write, applied to a *copy*
of ``system_under_test`` in a scratch folder (never to the shipped code),
together with the catalog scenario expected to expose it. The harness runs
the copy through the same target adapter, with the copy first on
``PYTHONPATH``; a mutant is *killed* when the run's verdict is invalid.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import system_under_test
from harness.errors import CrashlabError
from harness.packs.reference.target import ReferenceTarget
from harness.procs import default_state_dir


@dataclass(frozen=True)
class Patch:
    file: str  # relative to the system_under_test package
    old: str
    new: str


@dataclass(frozen=True)
class Mutant:
    name: str
    description: str
    scenario: str  # the catalog scenario that should expose it
    patches: tuple[Patch, ...]


MUTANTS: dict[str, Mutant] = {m.name: m for m in (
    Mutant(
        "commit-without-epoch-check",
        "the chunk commit only checks that the job is PROCESSING, not that the writer "
        "still holds its epoch, so a zombie's late commit is accepted",
        "zombie-worker",
        (Patch("lua.py",
               'COMMIT_CHUNK = _PRELUDE + """\n'
               "local why = fenced(ARGV[3], ARGV[2], 'commit_chunk')\n"
               "if why then return why end\n",
               'COMMIT_CHUNK = _PRELUDE + """\n'
               "if redis.call('HGET', KEYS[1], 'state') ~= 'PROCESSING' then "
               "return 'not_processing' end\n"),),
    ),
    Mutant(
        "event-in-separate-step",
        "the chunk result is committed in one step and its chunk_committed event is "
        "published in a second one, so a crash in between loses the event",
        "crash-after-transcription",
        (Patch("lua.py",
               "emit(ARGV[1], 'chunk_committed', ARGV[2], ARGV[3], ARGV[4],\n"
               "     cjson.encode({chunk = tonumber(ARGV[5]), chunks_done = done, "
               "chunk_count = total}))\n",
               ""),
         Patch("pipeline.py",
               '        await self.at("chunk.committed", claim, chunk.index)\n',
               '        await self.at("chunk.committed", claim, chunk.index)\n'
               "        job = await self._read(lambda: self.store.job(claim.job_id))\n"
               "        await self._write(lambda: self.store.emit(\n"
               '            claim, self.worker_id, "chunk_committed", {\n'
               '                "chunk": chunk.index, "chunks_done": int(job["chunks_done"]),\n'
               '                "chunk_count": int(job["chunk_count"])}))\n')),
    ),
    Mutant(
        "resume-ignores-committed-chunks",
        "after a crash the worker transcribes every chunk of the plan again instead of "
        "only the uncommitted ones",
        "crash-mid-transcription",
        (Patch("pipeline.py",
               "        remaining = [chunk for chunk in plan if chunk.index not in committed]\n",
               "        remaining = list(plan)\n"),),
    ),
    Mutant(
        "retry-counter-not-incremented",
        "a takeover after a crash reads the retry counter instead of incrementing it, so "
        "crashes never consume attempts",
        "crash-after-transcription",
        (Patch("lua.py",
               "local retries = redis.call('HINCRBY', KEYS[1], 'retry_count', 1)\n",
               "local retries = tonumber(redis.call('HGET', KEYS[1], 'retry_count') or '0')\n"),),
    ),
    Mutant(
        "recovery-failure-publishes-no-event",
        "when a recovering worker fails the job it publishes job_failed but never closes "
        "the recovery with recovery_failed",
        "source-missing-on-resume",
        (Patch("lua.py",
               "if recovery == '1' then emit(job_id, 'recovery_failed', worker, epoch, '1', "
               "data) end\n",
               ""),),
    ),
    Mutant(
        "chunk-checksum-not-verified",
        "recovery trusts every chunk file on disk instead of checking it against the "
        "checksum recorded when it was cut",
        "corrupted-chunk-files",
        (Patch("recovery.py",
               "    return data if media.digest(data) == checksum else None\n",
               "    return data\n"),),
    ),
    Mutant(
        "resume-offset-off-by-one",
        "the resume starts after the last committed chunk plus one, skipping a chunk",
        "crash-mid-transcription",
        (Patch("pipeline.py",
               "        remaining = [chunk for chunk in plan if chunk.index not in committed]\n",
               "        start = max(committed) + 2 if committed else 0\n"
               "        remaining = [chunk for chunk in plan if chunk.index >= start]\n"),),
    ),
    Mutant(
        "takeover-ignores-lease",
        "the janitor treats every PROCESSING job as orphaned and takes it over without "
        "looking at its lease, stealing jobs from live workers",
        "worker-pool-crash",
        (Patch("store.py",
               "        return [job_id for job_id, flag in zip(ids, flags, strict=True) "
               "if not flag]\n",
               "        return list(ids)\n"),
         Patch("lua.py",
               "if redis.call('EXISTS', KEYS[3]) == 1 then return {'skip', 'lease_held'} end\n",
               "")),
    ),
    Mutant(
        "claim-without-lease",
        "a claim opens the epoch but sets no lease until the first heartbeat, so another "
        "worker sees the job as orphaned and takes it over",
        "worker-pool-crash",
        (Patch("lua.py",
               "    redis.call('SET', job_key .. ':lease', worker .. '|' .. epoch, 'PX', "
               "lease_ms)\n",
               ""),),
    ),
    Mutant(
        "retry-limit-not-enforced",
        "a takeover counts the lost worker but never compares it with max_retries, so a "
        "job that keeps killing its workers is retried forever",
        "retry-limit-reached",
        (Patch("lua.py",
               "if retries > tonumber(job[4] or '0') then\n",
               "if false then\n"),),
    ),
    Mutant(
        "shutdown-skips-release",
        "on SIGTERM the worker cancels its running jobs and exits without handing them "
        "back, so a deploy leaves each job to its lease and the takeover counts a retry",
        "deploy-mid-job",
        (Patch("worker.py",
               "                reply = await self.store.release(claim, self.worker_id)\n",
               "                reply = \"not released\"\n"),),
    ),
)}


def materialize(mutant: Mutant, dest: Path) -> Path:
    """Write the patched copy under ``dest``; returns the folder to put on PYTHONPATH."""
    source = Path(system_under_test.__file__).parent
    target = dest / "system_under_test"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
    for patch in mutant.patches:
        path = target / patch.file
        text = path.read_text()
        if text.count(patch.old) != 1:
            raise CrashlabError(f"mutant {mutant.name}: the text to patch in {patch.file} was "
                                f"found {text.count(patch.old)} times (expected once); the "
                                "worker changed and the mutant must be updated")
        path.write_text(text.replace(patch.old, patch.new))
    return dest


def mutant_target(name: str, state_dir: Path | None = None) -> ReferenceTarget:
    """The reference target running a fresh copy with mutant ``name`` planted.

    Raises ``CrashlabError`` naming the known mutants when there is no such one.
    """
    if name not in MUTANTS:
        raise CrashlabError(f"no mutant named {name!r}; known: {', '.join(MUTANTS)}")
    copy = materialize(MUTANTS[name], (state_dir or default_state_dir()) / "mutants" / name)
    return ReferenceTarget(pythonpath=copy, mutant=name)
