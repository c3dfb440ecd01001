"""``crashlab mutants --generate``: a mutation score from cosmic-ray, judged by crashlab runs.

The planted mutants (``crashlab mutants``) are bugs written next to the
scenarios that catch them. This measures the catalog with mutants nobody
here chose: cosmic-ray (8.x) makes every mutation its operators know in the
target's recovery modules, plus the two Lua operators of
``harness.mutation_ops`` (delete a ``redis.call``, flip a comparison inside
a script), and each sampled mutant is judged by running the target's
mutation scenarios against it (``harness.mutation_check``).

cosmic-ray was chosen over mutmut because it takes any shell command as
the test (mutmut 3 runs pytest only), keeps a session in its own SQLite
database that a later call resumes, kills a test that overruns its timeout,
and takes operators from plugins, which is how the Lua operators join.

A session lives in one folder (default ``.crashlab/mutation/<target>``):

    src/<package>/     a copy of the worker's package; cosmic-ray mutates this
                       copy in place and puts each file back after its test
    session.sqlite     cosmic-ray's work database: every mutation, and the
                       result of each one run so far
    session.json       what the session was made with (sample, seed,
                       scenarios, the source's hash): a later call with
                       other choices is refused rather than mixed in
    runs/              the run folder that killed each mutant
    mutation.json      the summary; report.html the same as a page

Sampling: of all the mutations, ``sample`` are chosen (seeded), spread over
the modules in turn so that a large module does not crowd out a small one;
the rest are marked skipped in the database. Before any mutant, the
scenarios run once on the unmutated copy: if they are not all valid there,
every mutant would be "killed" for nothing, so the session stops.

Outcomes: ``killed`` (a scenario was invalid, could not conclude, or the
mutated worker would not start: each says which), ``survived`` (every
scenario valid), ``timed_out`` (the scenarios overran the budget per
mutant; cosmic-ray counts that as killed, this keeps it apart),
``incompetent`` (the test could not be run) and ``no_mutation``.
"""

from __future__ import annotations

import hashlib
import json
import random
import shlex
import shutil
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import SetupError
from harness.mutation_check import RESULT_MARK
from harness.target import MutationSource

KILLED, SURVIVED, TIMED_OUT = "killed", "survived", "timed_out"
INCOMPETENT, NO_MUTATION = "incompetent", "no_mutation"
OUTCOMES = (KILLED, SURVIVED, TIMED_OUT, INCOMPETENT, NO_MUTATION)
SESSION_DB, SESSION_META, SUMMARY = "session.sqlite", "session.json", "mutation.json"
TIMINGS = "seconds.jsonl"  # how long each mutant's test took (cosmic-ray keeps no times)
INSTALL_HINT = ("cosmic-ray is not installed; run `bash scripts/setup.sh` (it installs the "
                "project's dependency group 'mutation') or `pip install cosmic-ray==8.7.0`")


@dataclass(frozen=True)
class Choices:
    """What a session is made with; a resumed session must be asked the same."""

    target: str
    sample: int
    seed: int
    scenarios: tuple[str, ...]
    source_sha256: str


@dataclass
class MutantResult:
    job_id: str
    file: str
    line: int
    operator: str
    outcome: str
    detail: str  # why killed (scenario and witness), or what ran for a survivor
    scenarios_ran: list[str] = field(default_factory=list)
    diff: str = ""
    seconds: float | None = None


def _cosmic_ray() -> Any:
    try:
        import cosmic_ray.commands
        import cosmic_ray.mutating
        import cosmic_ray.testing
        import cosmic_ray.work_db
        import cosmic_ray.work_item
    except ImportError as exc:
        raise SetupError(INSTALL_HINT) from exc
    return cosmic_ray


def source_hash(package: Path, files: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + (package / name).read_bytes())
    return digest.hexdigest()


class MutationSession:
    """One cosmic-ray session over a target's source (see the module docstring)."""

    def __init__(self, folder: Path, target_name: str, source: MutationSource, *, sample: int,
                 seed: int, budget_s: float, scenarios: Sequence[str] | None = None) -> None:
        if sample < 1:
            raise SetupError(f"--sample must be at least 1 (got {sample})")
        if budget_s <= 0:
            raise SetupError(f"--budget must be positive (got {budget_s})")
        missing = [f for f in source.files if not (source.package / f).is_file()]
        if missing:
            raise SetupError(f"the target names modules to mutate that do not exist in "
                             f"{source.package}: {', '.join(missing)}")
        self.folder = folder
        self.source = source
        self.budget_s = budget_s
        self.choices = Choices(target_name, sample, seed,
                               tuple(scenarios or source.scenarios),
                               source_hash(source.package, source.files))
        self.copy = folder / "src" / source.package.name
        self.cr = _cosmic_ray()

    # -- the session folder ------------------------------------------------------------
    def open(self, *, fresh: bool) -> int:
        """Copy the pristine package and open (or make) the database; pending mutants."""
        meta = self.folder / SESSION_META
        if fresh and self.folder.exists():
            shutil.rmtree(self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        if meta.exists():
            stored = Choices(**{**json.loads(meta.read_text()),
                                "scenarios": tuple(json.loads(meta.read_text())["scenarios"])})
            if stored != self.choices:
                changed = [k for k, v in asdict(stored).items()
                           if asdict(self.choices)[k] != v]
                raise SetupError(f"the session in {self.folder} was made with other "
                                 f"{', '.join(changed)}; run with --fresh to start a new one")
        # a previous call killed mid-mutant may have left a mutated file: copy afresh
        if self.copy.exists():
            shutil.rmtree(self.copy)
        shutil.copytree(self.source.package, self.copy,
                        ignore=shutil.ignore_patterns("__pycache__"))
        if not meta.exists():
            self._initialise()
            meta.write_text(json.dumps(asdict(self.choices), indent=2))
        with self._db() as db:
            return len(db.pending_work_items)

    def _db(self) -> Any:
        return self.cr.work_db.use_db(str(self.folder / SESSION_DB),
                                      self.cr.work_db.WorkDB.Mode.create)

    def _initialise(self) -> None:
        paths = [self.copy / name for name in self.source.files]
        with self._db() as db:
            self.cr.commands.init(paths, db, {})
            items = sorted(db.work_items, key=_sort_key)
            chosen = _spread_sample(items, self.choices.sample, self.choices.seed)
            skipped = [i.job_id for i in items if i.job_id not in chosen]
            db.set_multiple_results(skipped, self.cr.work_item.WorkResult(
                worker_outcome=self.cr.work_item.WorkerOutcome.SKIPPED))

    # -- running ------------------------------------------------------------------------
    def test_command(self) -> str:
        parts = [sys.executable, "-m", "harness.mutation_check", "--target", self.choices.target,
                 "--source", str(self.copy.parent), "--runs", str(self.folder / "runs"),
                 "--seed", str(self.choices.seed)]
        for name in self.choices.scenarios:
            parts += ["--scenario", name]
        return shlex.join(parts)

    def baseline(self) -> None:
        """The scenarios on the unmutated copy: all valid, or the session stops."""
        outcome, output = self.cr.testing.run_tests(self.test_command(), self.budget_s)
        if outcome != self.cr.work_item.TestOutcome.SURVIVED:
            found = _parse(output)
            why = (found.get("stopped_by") or {}).get("witness") or output[-400:]
            raise SetupError(f"the mutation scenarios are not all valid on the unmutated "
                             f"worker, so no mutant could be judged: {why}")

    def run(self, progress: Callable[[int, int, MutantResult], None] | None = None) -> None:
        with self._db() as db:
            pending = sorted(db.pending_work_items, key=_sort_key)
        for number, item in enumerate(pending, 1):
            started = time.monotonic()
            result = self.cr.mutating.mutate_and_test(item.mutations, self.test_command(),
                                                      self.budget_s)
            seconds = time.monotonic() - started
            with self._db() as db:
                db.set_result(item.job_id, result)
            with (self.folder / TIMINGS).open("a") as times:
                times.write(json.dumps({"job_id": item.job_id, "seconds": seconds}) + "\n")
            if progress is not None:
                progress(number, len(pending), self._judge(item, result, seconds))

    # -- results ------------------------------------------------------------------------
    def results(self) -> list[MutantResult]:
        with self._db() as db:
            done = db.completed_work_items
        skipped = self.cr.work_item.WorkerOutcome.SKIPPED
        times = self._timings()
        judged = [self._judge(item, result, times.get(item.job_id)) for item, result in done
                  if result.worker_outcome != skipped]
        return sorted(judged, key=lambda r: (r.file, r.line, r.operator))

    def _judge(self, item: Any, result: Any, seconds: float | None) -> MutantResult:
        wi = self.cr.work_item
        mutation = item.mutations[0]
        row = MutantResult(item.job_id, Path(mutation.module_path).name, mutation.start_pos[0],
                           mutation.operator_name, INCOMPETENT, "", diff=result.diff or "",
                           seconds=None if seconds is None else round(seconds, 1))
        found = _parse(result.output or "")
        row.scenarios_ran = [r["scenario"] for r in found.get("ran", [])]
        if result.worker_outcome == wi.WorkerOutcome.NO_TEST:
            row.outcome, row.detail = NO_MUTATION, "cosmic-ray found nothing to change there"
        elif result.test_outcome == wi.TestOutcome.SURVIVED:
            row.outcome = SURVIVED
            row.detail = f"all {len(row.scenarios_ran)} scenarios valid"
        elif result.test_outcome == wi.TestOutcome.KILLED and result.output == "timeout":
            row.outcome = TIMED_OUT
            row.detail = f"the scenarios overran the budget of {self.budget_s:g} s"
        elif result.test_outcome == wi.TestOutcome.KILLED:
            stop = found.get("stopped_by") or {}
            row.outcome = KILLED
            row.detail = (f"{stop.get('scenario')}: {stop.get('verdict')}: "
                          f"{stop.get('witness')}" if stop else (result.output or "")[-300:])
        else:
            row.detail = (result.output or "")[-300:]
        return row

    def summary(self) -> dict[str, Any]:
        rows = self.results()
        counts = Counter(r.outcome for r in rows)
        judged = counts[KILLED] + counts[SURVIVED] + counts[TIMED_OUT]
        total = self._total()
        return {
            "target": self.choices.target, "session": str(self.folder),
            "mutations_in_source": total, "sample": self.choices.sample,
            "seed": self.choices.seed, "scenarios": list(self.choices.scenarios),
            "budget_s": self.budget_s, "done": len(rows),
            "counts": {o: counts[o] for o in OUTCOMES},
            # timed out counts as detected (the run changed), as cosmic-ray counts it
            "score": None if not judged else round((counts[KILLED] + counts[TIMED_OUT])
                                                   / judged, 3),
            "by_operator": _by(rows, lambda r: r.operator),
            "by_file": _by(rows, lambda r: r.file),
            "mutants": [asdict(r) for r in rows],
        }

    def _timings(self) -> dict[str, float]:
        path = self.folder / TIMINGS
        if not path.exists():
            return {}
        lines = (json.loads(line) for line in path.read_text().splitlines() if line.strip())
        return {line["job_id"]: float(line["seconds"]) for line in lines}

    def _total(self) -> int:
        with self._db() as db:
            return int(db.num_work_items)


def _sort_key(item: Any) -> tuple[str, str, int]:
    m = item.mutations[0]
    return str(m.module_path), m.operator_name, m.occurrence


def _spread_sample(items: Sequence[Any], size: int, seed: int) -> set[str]:
    """``size`` job ids, drawn in turn from each module (seeded)."""
    rng = random.Random(seed)
    by_file: dict[str, list[Any]] = {}
    for item in items:
        by_file.setdefault(str(item.mutations[0].module_path), []).append(item)
    for bucket in by_file.values():
        rng.shuffle(bucket)
    chosen: set[str] = set()
    while len(chosen) < size and any(by_file.values()):
        for bucket in by_file.values():
            if bucket and len(chosen) < size:
                chosen.add(bucket.pop().job_id)
    return chosen


def _parse(output: str) -> dict[str, Any]:
    for line in reversed(output.splitlines()):
        if line.startswith(RESULT_MARK):
            parsed: dict[str, Any] = json.loads(line[len(RESULT_MARK):])
            return parsed
    return {}


def _by(rows: Sequence[MutantResult], key: Callable[[MutantResult], str]) -> dict[str, Any]:
    table: dict[str, Counter[str]] = {}
    for row in rows:
        table.setdefault(key(row), Counter())[row.outcome] += 1
    return {name: dict(counts) for name, counts in sorted(table.items())}
