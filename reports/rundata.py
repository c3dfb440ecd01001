"""One run folder, read back for a report: results, history, final state, schedule, logs.

A report renders only from what a run saved (``harness.runfolder`` lists the
files), never from a live environment. A run that was interrupted may lack
``results.json`` or ``state.json``; ``load_run`` still returns what is there
and says what is missing in ``problems``, so the report of a broken run shows
its timeline and logs instead of failing. A folder without ``history.jsonl``
is not a run folder (``ReportError``).

Log tails: every ``logs/*.log`` (workers, API) and every service's log one
folder down (``redis/redis.log``, ...), the last ``TAIL_LINES`` lines each.
JSON-lines logs (the worker's and the API's) are shown as
``time level logger: message``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.checkers.base import CheckResult, Verdict
from harness.errors import CrashlabError
from harness.history import (
    HISTORY_FILE,
    STATE_FILE,
    FinalState,
    History,
    HistoryError,
    load_history,
    load_state,
)
from harness.runfolder import COUNTEREXAMPLE_FILE, RESULTS_FILE, SCHEDULE_FILE

"""An explorer may leave its shrunk counterexample here; the report shows it first."""

TAIL_LINES = 40
TAIL_BYTES = 64 * 1024
LINE_CHARS = 400


class ReportError(CrashlabError):
    """A folder cannot be reported on (names the folder, what is missing and the fix)."""


@dataclass(frozen=True)
class StoredResults:
    """``results.json`` as the runner wrote it (``RunResult.to_json``)."""

    verdict: Verdict
    checks: tuple[CheckResult, ...]
    faults_planned: int
    faults_fired: int
    duration_s: float | None
    replay: str | None

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> StoredResults:
        checks = tuple(
            CheckResult(str(c["checker"]), Verdict(str(c["verdict"])), str(c.get("witness", "")),
                        tuple(str(d) for d in c.get("details") or ()))
            for c in raw.get("checks") or ())
        faults = raw.get("faults") or {}
        duration = raw.get("duration_s")
        replay = raw.get("replay")
        return cls(Verdict(str(raw["verdict"])), checks, int(faults.get("planned", 0)),
                   int(faults.get("fired", 0)),
                   None if duration is None else float(duration),
                   None if replay is None else str(replay))


@dataclass(frozen=True)
class LogTail:
    """The last lines of one process log; ``name`` is its path inside the run folder."""

    name: str
    lines: tuple[str, ...]
    total_lines: int

    @property
    def cut(self) -> bool:
        return self.total_lines > len(self.lines)


@dataclass(frozen=True)
class RunFolder:
    """Everything saved about one run; ``results`` and ``state`` are None when missing."""

    path: Path
    scenario: str
    seed: int | None
    target: str | None
    history: History
    results: StoredResults | None
    state: FinalState | None
    schedule_doc: Mapping[str, Any] | None
    problems: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def started(self) -> float | None:
        """Wall-clock time of ``run_start`` (the zero of every timeline)."""
        start = self.history.run_start
        if start is not None:
            return start.ts
        return self.history[0].ts if len(self.history) else None

    @property
    def verdict(self) -> Verdict | None:
        """The stored verdict; None for a run that never finished (no ``results.json``)."""
        return None if self.results is None else self.results.verdict

    @property
    def replay_commands(self) -> tuple[str, ...]:
        """Commands that re-run this run: the stored replay, then ``crashlab run`` with the
        seed, which reproduces the same schedule."""
        commands = []
        if self.results is not None and self.results.replay:
            commands.append(self.results.replay)
        if self.seed is not None:
            commands.append(f"crashlab run {self.scenario} --seed {self.seed}")
        return tuple(commands)


def is_run_folder(path: Path) -> bool:
    return (path / HISTORY_FILE).is_file()


def load_run(path: Path) -> RunFolder:
    """Read a run folder; ``ReportError`` if it has no readable history."""
    path = path.resolve()
    if not is_run_folder(path):
        raise ReportError(f"{path} is not a run folder: it has no {HISTORY_FILE} "
                          "(pass a folder under runs/, e.g. runs/latest)")
    try:
        history = load_history(path / HISTORY_FILE)
    except (HistoryError, OSError, UnicodeDecodeError) as exc:
        raise ReportError(f"{path / HISTORY_FILE} cannot be read: {exc}") from exc
    problems: list[str] = []
    results = _load_results(path, problems)
    state = _load_state(path, problems)
    schedule_doc = _load_json(path / SCHEDULE_FILE, problems)
    start = history.run_start
    scenario = str(start.get("scenario")) if start is not None else None
    if not scenario and schedule_doc is not None:
        scenario = str((schedule_doc.get("scenario") or {}).get("name") or "")
    seed = start.get("seed") if start is not None else None
    if seed is None and schedule_doc is not None:
        seed = schedule_doc.get("seed")
    target = start.get("target") if start is not None else None
    mutant = (schedule_doc or {}).get("mutant")
    if target is not None and mutant:
        target = f"{target} with planted bug {mutant}"
    return RunFolder(path, scenario or path.name, None if seed is None else int(seed),
                     None if target is None else str(target), history, results, state,
                     schedule_doc, tuple(problems))


def load_counterexample(path: Path) -> Mapping[str, Any] | None:
    """The counterexample an explorer saved in the run folder, if any."""
    return _load_json(path / COUNTEREXAMPLE_FILE, [])


def _load_results(path: Path, problems: list[str]) -> StoredResults | None:
    raw = _load_json(path / RESULTS_FILE, problems)
    if raw is None:
        return None
    try:
        return StoredResults.from_json(raw)
    except (KeyError, TypeError, ValueError) as exc:
        problems.append(f"{RESULTS_FILE} is malformed ({exc!r})")
        return None


def _load_state(path: Path, problems: list[str]) -> FinalState | None:
    file = path / STATE_FILE
    if not file.is_file():
        problems.append(f"no {STATE_FILE}: the run stopped before its final snapshot")
        return None
    try:
        return load_state(file)
    except (HistoryError, OSError) as exc:
        problems.append(f"{STATE_FILE} cannot be read ({exc})")
        return None


def _load_json(file: Path, problems: list[str]) -> dict[str, Any] | None:
    if not file.is_file():
        if file.name == RESULTS_FILE:
            problems.append(f"no {RESULTS_FILE}: the run was interrupted or failed to set up, "
                            "so no checker judged it")
        elif file.name != COUNTEREXAMPLE_FILE:
            problems.append(f"no {file.name}")
        return None
    try:
        raw = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        problems.append(f"{file.name} cannot be read ({exc})")
        return None
    if not isinstance(raw, dict):
        problems.append(f"{file.name} is not a JSON object")
        return None
    return raw


def log_files(run: Path) -> list[Path]:
    """The run's process logs: ``logs/*.log`` first, then each service folder's logs."""
    found = sorted((run / "logs").glob("*.log")) if (run / "logs").is_dir() else []
    for folder in sorted(p for p in run.iterdir() if p.is_dir() and p.name != "logs"):
        found.extend(sorted(folder.glob("*.log")))
    return found


def log_tails(run: Path, order: Sequence[str] = (), *, t0: float | None = None,
              lines: int = TAIL_LINES) -> list[LogTail]:
    """The tail of every log; logs named in ``order`` (process names, e.g. lane order)
    come first, in that order. With ``t0``, JSON records are stamped in seconds since it."""
    rank = {name: i for i, name in enumerate(order)}
    files = log_files(run)
    files.sort(key=lambda f: (rank.get(f.stem, len(rank)), f.parent.name != "logs"))
    return [_tail(run, file, lines, t0) for file in files]


def _tail(run: Path, file: Path, count: int, t0: float | None) -> LogTail:
    with file.open("rb") as handle:
        handle.seek(0, 2)
        size = handle.tell()
        handle.seek(max(0, size - TAIL_BYTES))
        data = handle.read()
    raw_lines = data.decode("utf-8", errors="replace").splitlines()
    if size > TAIL_BYTES and raw_lines:
        raw_lines = raw_lines[1:]  # the first line may start mid-line
    total = _count_lines(file) if size > TAIL_BYTES else len(raw_lines)
    shown = tuple(_shorten(format_log_line(line, t0)) for line in raw_lines[-count:])
    return LogTail(str(file.relative_to(run)), shown, total)


def _count_lines(file: Path) -> int:
    with file.open("rb") as handle:
        return sum(1 for _ in handle)


def _shorten(line: str) -> str:
    return line if len(line) <= LINE_CHARS else line[:LINE_CHARS] + " …"


def format_log_line(line: str, t0: float | None = None) -> str:
    """A JSON log record as ``+1.234s LEVEL logger: message`` (seconds since ``t0``, or its
    wall time without one), with the last line of an exception; any other line unchanged."""
    stripped = line.strip()
    try:
        record = json.loads(stripped) if stripped.startswith("{") else None
    except json.JSONDecodeError:
        record = None
    if not isinstance(record, dict) or "msg" not in record:
        return line.rstrip()
    ts = record.get("ts")
    if t0 is not None and isinstance(ts, int | float):
        when = f"+{ts - t0:.3f}s"
    else:
        when = str(record.get("time", ""))
    head = " ".join(p for p in (when, str(record.get("level", "")).upper()) if p)
    message = str(record["msg"])
    exc = record.get("exc")
    if exc:
        last = [part for part in str(exc).splitlines() if part.strip()]
        message += f" | {last[-1].strip()}" if last else ""
    logger = record.get("logger")
    return f"{head} {logger}: {message}" if logger else f"{head} {message}"
