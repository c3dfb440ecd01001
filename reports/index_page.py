"""The index across runs: every run folder under one or more runs roots, on one page.

It shows, per scenario, the latest verdict and the trend of verdicts over its
repeated runs (one square per run, linking to that run's report), how long
the runs took and how fast they recovered; a chart of every run's verdict
over time; recovery latency per scenario as a distribution; and a table of
every run, newest first. Runs whose folder is broken (no results, unreadable
history) are listed as ``incomplete`` with the reason.

Reading a run here costs its ``results.json`` and ``history.jsonl`` (for
recovery latency), a few milliseconds each, so the index is rebuilt from the
folders every time rather than cached.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

from harness.checkers.base import Verdict, tally_words
from harness.runfolder import INDEX_FILE as INDEX_FILE  # re-exported
from reports import charts
from reports.html import badge, banner, cards, chart, esc, page, seconds, section, table, toc
from reports.measures import median, recoveries
from reports.run_page import REPORT_FILE, write_atomically
from reports.rundata import ReportError, is_run_folder, load_run

TREND_RUNS = 40
"""How many of a scenario's latest runs its trend squares show (the table lists them all)."""

_RANK = {"valid": 0, "incomplete": 1, "unknown": 2, "invalid": 3}


@dataclass(frozen=True)
class RunRow:
    """What the index needs of one run folder."""

    path: Path
    scenario: str
    seed: int | None
    started: float
    verdict: str  # valid, invalid, unknown or incomplete
    not_valid: tuple[str, ...]  # checkers that came out invalid or unknown
    faults: str  # "fired/planned"
    duration_s: float | None
    latencies: tuple[float, ...]
    problem: str | None
    counts: str = ""  # "12 held, 1 unknown, 3 not applicable"

    @property
    def name(self) -> str:
        return self.path.name


Href = Callable[[RunRow], "str | None"]
"""A run's link to its report, relative to the index (None: it has no report yet)."""


RUN_NAME = re.compile(r"^(?P<stamp>\d{8}-\d{6})-(?P<scenario>.+?)(?:-\d+)?$")
"""``runfolder.new_run_dir``'s names: ``<YYYYmmdd-HHMMSS>-<scenario>[-<n>]``."""


def find_runs(roots: Iterable[Path]) -> list[Path]:
    """Every run folder directly under the roots: each folder with a history, and each
    folder named like a run even if it has none (a run that died before recording).
    An exploration's folder is not a run: its runs are in its ``examples/``."""
    found: list[Path] = []
    for root in roots:
        if not root.is_dir():
            continue
        for child in sorted(root.iterdir()):
            if child.is_dir() and not child.is_symlink() and not (
                    child / "examples").is_dir() and (
                    is_run_folder(child) or RUN_NAME.match(child.name)):
                found.append(child.resolve())
    return found


def read_run(path: Path) -> RunRow:
    """The index row of one run; a broken folder becomes an ``incomplete`` row."""
    try:
        run = load_run(path)
    except ReportError as exc:
        named = RUN_NAME.match(path.name)
        scenario = named.group("scenario") if named else path.name
        return RunRow(path, scenario, None, _stamp(path), "incomplete", (), "?", None, (),
                      str(exc))
    t0 = run.started if run.started is not None else path.stat().st_mtime
    latencies = tuple(r.latency for r in recoveries(run.history, t0) if r.latency is not None)
    results = run.results
    if results is None:
        planned = len(run.history.schedule)
        return RunRow(run.path, run.scenario, run.seed, t0, "incomplete", (), f"?/{planned}",
                      None, latencies, run.problems[0] if run.problems else None)
    not_valid = tuple(c.checker for c in results.checks
                      if c.verdict in (Verdict.INVALID, Verdict.UNKNOWN))
    return RunRow(run.path, run.scenario, run.seed, t0, str(results.verdict), not_valid,
                  f"{results.faults_fired}/{results.faults_planned}", results.duration_s,
                  latencies, None, tally_words(c.verdict for c in results.checks))


def render_index(roots: Sequence[Path], out_dir: Path,
                 reports: Mapping[Path, Path] | None = None) -> str:
    """The index page of every run under ``roots``, with links relative to ``out_dir``.

    A run links to ``reports[run]`` when given, else to its ``report.html`` if there is one.
    """
    rows = sorted((read_run(path) for path in find_runs(roots)), key=lambda r: r.started)
    links = {path.resolve(): target for path, target in (reports or {}).items()}

    def href(row: RunRow) -> str | None:
        target = links.get(row.path)
        if target is None and (row.path / REPORT_FILE).is_file():
            target = row.path / REPORT_FILE
        if target is None:
            return None
        return quote(Path(_relative(target.resolve(), out_dir.resolve())).as_posix())

    by_scenario: dict[str, list[RunRow]] = {}
    for row in rows:
        by_scenario.setdefault(row.scenario, []).append(row)
    body = [_header(roots, rows), _banner(by_scenario)]
    body.append(toc([("scenarios", "Scenarios"), ("trend", "Trend"),
                     ("latency", "Recovery latency"), ("runs", "All runs")]))
    body.append(cards([(str(len(rows)), "runs"), (str(len(by_scenario)), "scenarios")]
                      + [(str(sum(1 for r in rows if r.verdict == word)), word)
                         for word in ("valid", "invalid", "unknown", "incomplete")]))
    body.append(_scenarios(by_scenario, href))
    if rows:
        points = [(r.scenario, datetime.fromtimestamp(r.started), r.verdict) for r in rows]
        body.append(section("trend", "Trend", chart(charts.trend_svg(points)),
                            "Every run as a dot, by scenario and start time, coloured by "
                            "verdict."))
    groups = [(name, [v for r in runs for v in r.latencies])
              for name, runs in sorted(by_scenario.items())]
    groups = [(name, values) for name, values in groups if values]
    if groups:
        body.append(section("latency", "Recovery latency", chart(charts.latency_svg(
            groups, "seconds from crash to resumed progress")),
            "Every crash of every run, per scenario: from the SIGKILL (or SIGSTOP) to the job's "
            "next committed chunk."))
    body.append(_all_runs(rows, href))
    return page("crashlab · runs", "\n".join(body))


def write_index(roots: Sequence[Path], out: Path | None = None,
                reports: Mapping[Path, Path] | None = None) -> Path:
    """Render and save the index (default ``<first root>/index.html``); returns its path."""
    target = out if out is not None else roots[0] / INDEX_FILE
    write_atomically(target, render_index(roots, target.parent, reports))
    return target


def _stamp(path: Path) -> float:
    """When a run folder was made: the time in its name, else its modification time."""
    named = RUN_NAME.match(path.name)
    if named:
        try:
            return time.mktime(time.strptime(named.group("stamp"), "%Y%m%d-%H%M%S"))
        except ValueError:
            pass
    return path.stat().st_mtime


def _relative(target: Path, base: Path) -> str:
    try:
        return str(target.relative_to(base))
    except ValueError:
        return os.path.relpath(target, base)


def _header(roots: Sequence[Path], rows: Sequence[RunRow]) -> str:
    where = ", ".join(str(root.resolve()) for root in roots)
    meta = f"{where} · {len(rows)} runs · written {time.strftime('%Y-%m-%d %H:%M:%S')}"
    return (f'<header class="top"><h1>crashlab runs</h1><div class="meta">{esc(meta)}</div>'
            "</header>")


def _banner(by_scenario: Mapping[str, Sequence[RunRow]]) -> str:
    if not by_scenario:
        return banner("incomplete", "no run folder here yet",
                      "crashlab run NAME writes one per scenario")
    latest = {name: runs[-1] for name, runs in by_scenario.items()}
    worst = max((row.verdict for row in latest.values()), key=lambda v: _RANK.get(v, 1))
    bad = sorted(name for name, row in latest.items() if row.verdict == worst)
    if worst == "valid":
        return banner("valid", f"the latest run of each of the {len(latest)} scenarios held "
                               "every invariant")
    return banner(worst, f"{len(bad)} of {len(latest)} scenarios' latest run is {worst}",
                  ", ".join(bad))


def _scenarios(by_scenario: Mapping[str, Sequence[RunRow]], href: Href) -> str:
    rows = []
    for name, runs in sorted(by_scenario.items()):
        counts = {word: sum(1 for r in runs if r.verdict == word)
                  for word in ("valid", "invalid", "unknown", "incomplete")}
        durations = [r.duration_s for r in runs if r.duration_s is not None]
        latencies = [v for r in runs for v in r.latencies]
        squares = "".join(_square(r, href(r)) for r in runs[-TREND_RUNS:])
        older = len(runs) - TREND_RUNS
        if older > 0:
            squares = f'<span class="note">+{older} older </span>' + squares
        rows.append([f"<code>{esc(name)}</code>", badge(runs[-1].verdict),
                     f'<span class="trend">{squares}</span>', str(len(runs)),
                     *(str(counts[w]) for w in ("valid", "invalid", "unknown", "incomplete")),
                     seconds(median(durations), 1), seconds(median(latencies))])
    return section("scenarios", "Scenarios", table(
        ["scenario", "latest", "trend (oldest → newest)", "runs", "valid", "invalid",
         "unknown", "incomplete", "median duration", "median recovery"], rows,
        numeric=[3, 4, 5, 6, 7, 8, 9]),
        "Each square is one run, in the verdict's colour; it links to the run's report.")


def _square(row: RunRow, link: str | None) -> str:
    title = esc(f"{row.name}: {row.verdict}")
    if link is None:
        return (f'<a class="bg-{esc(row.verdict)}" title="{title} (no report yet)" '
                f'href="{esc(quote(row.name))}/"></a>')
    return f'<a class="bg-{esc(row.verdict)}" title="{title}" href="{esc(link)}"></a>'


def _all_runs(rows: Sequence[RunRow], href: Href) -> str:
    cells, classes = [], []
    for row in reversed(rows):
        link = href(row)
        report = (f'<a href="{esc(link)}">report</a>' if link is not None
                  else f'<span class="note">no report (crashlab report {esc(row.name)})</span>')
        not_valid = ", ".join(row.not_valid) or (row.problem or "")
        cells.append([esc(datetime.fromtimestamp(row.started).strftime("%Y-%m-%d %H:%M:%S")),
                      f"<code>{esc(row.scenario)}</code>", esc("" if row.seed is None
                                                                else row.seed),
                      badge(row.verdict), esc(row.counts), esc(not_valid), esc(row.faults),
                      seconds(row.duration_s, 1), report,
                      f'<span class="mono">{esc(row.name)}</span>'])
        classes.append({"invalid": "bad", "unknown": "hl"}.get(row.verdict, ""))
    return section("runs", f"All runs ({len(rows)})", table(
        ["started", "scenario", "seed", "verdict", "checks", "not valid / problem",
         "faults fired", "duration", "report", "folder"], cells, numeric=[2, 6, 7],
        row_classes=classes))
