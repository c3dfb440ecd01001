"""Worker code coverage in the reports: a section of a run's page, and a page of its own.

``crashlab run --coverage`` leaves ``coverage.json`` in each run folder, and
one combined over every scenario of the command in
``runs/coverage/<time>/`` (``harness.worker_coverage`` writes both; the
``crashlab`` key is what is shown here). ``coverage_section(summary)`` is
the section the run page adds when the file is there;
``write_coverage_report(json_path)`` renders the combined file as
``coverage.html`` beside it.

The recovery regions come first and apart (the code a crash makes run:
takeover, leases, timeouts, retries, resume), with every branch no scenario
took, then each module of the worker.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from reports.html import cards, esc, page, section, table

COVERAGE_JSON = "coverage.json"
COVERAGE_HTML = "coverage.html"

NOTE = ("Line and branch coverage of the worker's processes, measured by coverage.py while "
        "the faults ran. Data is saved every 0.25 s and before each failpoint pause, so a "
        "SIGKILL at a phase keeps what the paused job ran up to the failpoint; any SIGKILL "
        "loses what the process's other tasks ran since the last save (at most 0.25 s). "
        "Lua scripts run inside Redis and are not measured.")


def load_summary(path: Path) -> Mapping[str, Any] | None:
    """The ``crashlab`` part of ``coverage.json`` at ``path`` (a file or a run folder)."""
    file = path / COVERAGE_JSON if path.is_dir() else path
    try:
        raw = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    summary = raw.get("crashlab") if isinstance(raw, dict) else None
    return summary if isinstance(summary, dict) else None


def _percent(totals: Mapping[str, Any], kind: str) -> str:
    return f"{float(totals.get(f'{kind}_percent', 0.0)):.1f} %"


def _fraction(part: object, whole: object) -> str:
    return f"{esc(part)}/{esc(whole)}"


def _arcs(arcs: Iterable[Iterable[int]]) -> str:
    """Branches as ``from→to``; a negative target is the function's exit."""
    words = []
    for arc in arcs:
        start, end = list(arc)[:2]
        words.append(f"{start}→exit" if end < 0 else f"{start}→{end}")
    return esc(", ".join(words)) or "—"


def _lines(lines: Iterable[int]) -> str:
    return esc(", ".join(str(n) for n in lines)) or "—"


def recovery_table(summary: Mapping[str, Any]) -> str:
    """One row per recovery region: lines and branches covered, and what was never run."""
    rows = []
    classes = []
    for region in summary.get("recovery", {}).get("regions", []):
        if not region.get("found"):
            rows.append([f"<code>{esc(region['region'])}</code>", "not found", "", "", ""])
            classes.append("na")
            continue
        rows.append([
            f"<code>{esc(region['region'])}</code>",
            _fraction(region["covered_lines"], region["statements"]),
            _fraction(region["covered_branches"], region["branches"]),
            _lines(region["missing_lines"]),
            _arcs(region["missing_branches"]),
        ])
        complete = not region["missing_lines"] and not region["missing_branches"]
        classes.append("" if complete else "hl")
    return table(["recovery region", "lines", "branches", "lines never run",
                  "branches never taken"], rows, numeric=(1, 2), row_classes=classes)


def files_table(summary: Mapping[str, Any]) -> str:
    rows = [[f"<code>{esc(name)}</code>",
             _fraction(data["covered_lines"], data["statements"]),
             _fraction(data["covered_branches"], data["branches"])]
            for name, data in summary.get("files", {}).items()]
    return table(["module", "lines", "branches"], rows, numeric=(1, 2))


def coverage_cards(summary: Mapping[str, Any]) -> str:
    totals = summary.get("totals", {})
    recovery = summary.get("recovery", {}).get("totals", {})
    return cards([
        (_percent(totals, "line"), "lines, all worker code"),
        (_percent(totals, "branch"), "branches, all worker code"),
        (_percent(recovery, "line"), "lines, recovery regions"),
        (_percent(recovery, "branch"), "branches, recovery regions"),
        (str(summary.get("processes", 0)), "processes measured"),
    ])


def coverage_section(summary: Mapping[str, Any]) -> str:
    """The "Worker coverage" section of a run's page."""
    body = (coverage_cards(summary) + "<h3>Recovery regions</h3>" + recovery_table(summary)
            + "<h3>Modules</h3>" + files_table(summary))
    return section("worker-coverage", "Worker coverage", body, NOTE)


def render_coverage(summary: Mapping[str, Any]) -> str:
    """A page of its own for a combined ``coverage.json`` (every scenario of one command)."""
    runs = summary.get("runs", [])
    listed = "".join(f"<li><code>{esc(run)}</code></li>" for run in runs)
    header = (f"<h1>Worker coverage over {len(runs)} run(s)</h1>"
              f"<p>Source measured: <code>{esc(', '.join(summary.get('source', [])))}</code>; "
              f"coverage.py {esc(summary.get('coverage_py', '?'))}.</p>")
    body = header + coverage_section(summary) + section("runs", "Runs combined",
                                                        f"<ul>{listed}</ul>")
    return page("crashlab · worker coverage", body)


def write_coverage_report(json_path: Path, out: Path | None = None) -> Path | None:
    """``coverage.html`` beside ``json_path`` (or at ``out``); None if it has no summary."""
    summary = load_summary(json_path)
    if summary is None:
        return None
    target = out if out is not None else json_path.parent / COVERAGE_HTML
    target.write_text(render_coverage(summary), encoding="utf-8")
    return target
