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
               "        await self._write(lambda: self.store.emit(\n"
               '            claim, self.worker_id, "chunk_committed", {"chunk": chunk.index}))\n')),
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
