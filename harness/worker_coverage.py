"""``crashlab run --coverage``: line and branch coverage of the worker code run under the faults.

Three steps, each its own function:

1. ``CoverageTarget`` wraps a target so that every process it starts (the
   workers, the API) runs under ``harness.coverage_launch``: the same module
   and arguments, measured by coverage.py with branches, one data file per
   process in ``<run folder>/coverage/``.
2. ``write_run_coverage(run_dir, target)`` combines one run folder's data
   files into ``<run folder>/coverage.json`` once the run is over.
3. ``write_combined_coverage(run_dirs, out_dir, target)`` combines the data of
   every scenario of one ``crashlab run`` into ``out_dir/coverage.json``.

``coverage.json`` is coverage.py's own JSON report (``files``, ``totals``,
per function in ``files[...]["functions"]``) with a ``crashlab`` key added:
the processes measured, and the *recovery regions* apart. A target names
what it measures in ``coverage_source`` (packages) and its recovery code in
``coverage_recovery``: a module (``pkg/recovery.py``) or one function of it
(``pkg/worker.py:Worker._next_claim``). A target without ``coverage_source``
cannot be measured (``SetupError``). Branches inside Lua scripts run in Redis
and no Python coverage tool sees them; the Python that calls them is measured.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import coverage

from harness.coverage_launch import DATA_FILE, DIR_ENV, PROGRAM, SOURCE_ENV
from harness.errors import SetupError
from harness.target import Target, Wiring, WorkerSpec

log = logging.getLogger(__name__)

COVERAGE_DIR = "coverage"  # inside a run folder: one data file per measured process
COVERAGE_JSON = "coverage.json"


def coverage_source(target: Target) -> tuple[str, ...]:
    """The packages ``target`` declares for coverage, or a ``SetupError`` saying how to."""
    source = tuple(getattr(target, "coverage_source", ()) or ())
    if not source:
        raise SetupError(f"target {getattr(target, 'name', target)!r} declares no "
                         "coverage_source (the packages of its worker to measure): add "
                         "coverage_source = ('your_package',) to its Target class")
    return source


def recovery_regions(target: Target) -> tuple[str, ...]:
    """The recovery regions ``target`` names (``pkg/mod.py`` or ``pkg/mod.py:Class.func``)."""
    return tuple(getattr(target, "coverage_recovery", ()) or ())


class CoverageTarget:
    """``inner`` with every process it starts measured; everything else is ``inner``'s."""

    def __init__(self, inner: Target) -> None:
        self.inner = inner
        self.coverage_source = coverage_source(inner)
        self.coverage_recovery = recovery_regions(inner)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def worker_argv(self) -> Sequence[str]:
        return self._measured(self.inner.worker_argv())

    def api_argv(self, host: str, port: int) -> Sequence[str] | None:
        argv = self.inner.api_argv(host, port)
        return None if argv is None else self._measured(argv)

    def environment(self, wiring: Wiring, worker: WorkerSpec | None,
                    settings: Mapping[str, str]) -> dict[str, str]:
        env = dict(self.inner.environment(wiring, worker, settings))
        # the Environment puts the worker's data folder in the run folder (run_dir/data)
        env[DIR_ENV] = str(wiring.data_dir.parent / COVERAGE_DIR)
        env[SOURCE_ENV] = ",".join(self.coverage_source)
        return env

    def _measured(self, argv: Sequence[str]) -> list[str]:
        if len(argv) < 3 or argv[1] != "-m":
            raise SetupError(f"--coverage needs a worker command of the form PYTHON -m MODULE "
                             f"ARGS, not {list(argv)!r}")
        return [argv[0], "-c", PROGRAM, *argv[2:]]


def write_run_coverage(run_dir: Path, target: Target) -> Path | None:
    """Combine the run folder's data files into ``run_dir/coverage.json``; None if none."""
    return _write([run_dir / COVERAGE_DIR], run_dir, target, keep=True)


def write_combined_coverage(run_dirs: Sequence[Path], out_dir: Path,
                            target: Target) -> Path | None:
    """One ``coverage.json`` in ``out_dir`` over every run folder of ``run_dirs``."""
    return _write([d / COVERAGE_DIR for d in run_dirs], out_dir, target, keep=True,
                  runs=[str(d) for d in run_dirs])


def _write(data_dirs: Sequence[Path], out_dir: Path, target: Target, *, keep: bool,
           runs: Sequence[str] = ()) -> Path | None:
    files = [f for d in data_dirs if d.is_dir() for f in sorted(d.glob(f"{DATA_FILE}.*"))]
    if not files:
        log.warning("no coverage data in %s", ", ".join(map(str, data_dirs)))
        return None
    out_dir.mkdir(parents=True, exist_ok=True)
    source = coverage_source(target)
    cov = coverage.Coverage(data_file=str(out_dir / COVERAGE_DIR / f"{DATA_FILE}-combined"),
                            branch=True, source_pkgs=list(source), config_file=False)
    cov.combine([str(f) for f in files], keep=keep)
    cov.save()
    report = out_dir / COVERAGE_JSON
    # every module of the packages, so one never imported shows as 0 %, not as absent
    cov.json_report(morfs=[str(p) for p in package_files(source)], outfile=str(report))
    raw = json.loads(report.read_text(encoding="utf-8"))
    raw["crashlab"] = summarize(raw, source, recovery_regions(target), processes=len(files),
                                runs=runs)
    report.write_text(json.dumps(raw, indent=1), encoding="utf-8")
    return report


def package_files(source: Sequence[str]) -> list[Path]:
    """Every ``.py`` file of the packages in ``source``, as this interpreter imports them."""
    found: list[Path] = []
    for name in source:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            continue
        for root in spec.submodule_search_locations:
            found += sorted(Path(root).rglob("*.py"))
    return found


def module_path(path: str, source: Sequence[str]) -> str:
    """``pkg/mod.py`` for a measured file's path, however the worker imported it."""
    parts = Path(path).parts
    for index in range(len(parts) - 1, -1, -1):
        if parts[index] in source:
            return "/".join(parts[index:])
    return Path(path).as_posix()


def summarize(raw: Mapping[str, Any], source: Sequence[str], regions: Sequence[str], *,
              processes: int, runs: Sequence[str] = ()) -> dict[str, Any]:
    """The ``crashlab`` key of ``coverage.json``: totals and the recovery regions apart."""
    files = {module_path(path, source): data for path, data in raw.get("files", {}).items()}
    per_file = {name: _counts(data) for name, data in sorted(files.items())}
    recovery = [_region(region, files) for region in regions]
    return {
        "source": list(source),
        "processes": processes,
        "runs": list(runs),
        "files": per_file,
        "totals": _total(per_file.values()),
        "recovery": {"regions": recovery, "totals": _total(r for r in recovery if r["found"])},
        "python": sys.version.split()[0],
        "coverage_py": coverage.__version__,
    }


def _region(region: str, files: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    module, _, function = region.partition(":")
    data = files.get(module)
    if data is not None and function:
        data = data.get("functions", {}).get(function)
    if data is None:
        return {"region": region, "found": False, **_counts({})}
    return {"region": region, "found": True, **_counts(data)}


def _counts(data: Mapping[str, Any]) -> dict[str, Any]:
    summary = data.get("summary", {})
    return {
        "statements": int(summary.get("num_statements", 0)),
        "covered_lines": int(summary.get("covered_lines", 0)),
        "branches": int(summary.get("num_branches", 0)),
        "covered_branches": int(summary.get("covered_branches", 0)),
        "missing_lines": list(data.get("missing_lines", [])),
        "missing_branches": [list(arc) for arc in data.get("missing_branches", [])],
    }


def _total(parts: Any) -> dict[str, Any]:
    counts = {"statements": 0, "covered_lines": 0, "branches": 0, "covered_branches": 0}
    for part in parts:
        for key in counts:
            counts[key] += int(part[key])
    return {**counts,
            "line_percent": _percent(counts["covered_lines"], counts["statements"]),
            "branch_percent": _percent(counts["covered_branches"], counts["branches"])}


def _percent(part: int, whole: int) -> float:
    return round(100.0 * part / whole, 1) if whole else 100.0
