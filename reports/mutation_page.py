"""The mutation score page: ``report.html`` of a ``crashlab mutants --generate`` session.

Rendered from the session's ``mutation.json`` (``harness.mutation_engine``):
the score and counts, the counts per operator and per module, every
survivor with its diff and the scenarios that ran against it, then every
other mutant with why it was killed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from reports.html import cards, esc, page, pre, section, table

MUTATION_HTML = "report.html"
OUTCOME_ORDER = ("killed", "survived", "timed_out", "incompetent", "no_mutation")


def render_mutation(summary: Mapping[str, Any]) -> str:
    counts = summary.get("counts", {})
    score = summary.get("score")
    shown = "—" if score is None else f"{score * 100:.1f} %"
    done, sample = summary.get("done", 0), summary.get("sample", 0)
    head = (f"<header class=\"top\"><h1>Mutation score: {esc(summary.get('target'))}</h1>"
            f"<div class=\"meta\">{esc(done)} of {esc(sample)} sampled mutants judged, out of "
            f"{esc(summary.get('mutations_in_source'))} that cosmic-ray can make; seed "
            f"{esc(summary.get('seed'))}</div></header>")
    figures = cards([(shown, "score (killed + timed out) / judged"),
                     *((str(counts.get(o, 0)), o.replace("_", " ")) for o in OUTCOME_ORDER)])
    mutants: Sequence[Mapping[str, Any]] = summary.get("mutants", [])
    survivors = [m for m in mutants if m.get("outcome") == "survived"]
    body = [head, figures,
            section("scenarios", "How each mutant was judged", esc(", ".join(
                summary.get("scenarios", []))),
                note=f"In this order, stopping at the first that is not valid; at most "
                     f"{summary.get('budget_s')} s per mutant."),
            section("operators", "By operator", _breakdown(summary.get("by_operator", {}))),
            section("modules", "By module", _breakdown(summary.get("by_file", {}))),
            section("survivors", f"Survivors ({len(survivors)})", _survivors(survivors),
                    note="Every scenario was valid with these changes in place: either a "
                         "scenario or checker is missing, or the change is equivalent."),
            section("all", "Every judged mutant", _all(mutants))]
    return page(f"mutation score {summary.get('target')}", "\n".join(body))


def _breakdown(table_data: Mapping[str, Mapping[str, int]]) -> str:
    if not table_data:
        return '<p class="note">No mutant judged yet.</p>'
    rows = [[esc(name), *(esc(counts.get(o, 0)) for o in OUTCOME_ORDER)]
            for name, counts in table_data.items()]
    return table(["", *(o.replace("_", " ") for o in OUTCOME_ORDER)], rows,
                 numeric=range(1, len(OUTCOME_ORDER) + 1))


def _survivors(survivors: Sequence[Mapping[str, Any]]) -> str:
    if not survivors:
        return '<p class="note">None: every judged mutant was told apart.</p>'
    parts = []
    for m in survivors:
        parts.append(f"<h3>{esc(m['file'])}:{esc(m['line'])} {esc(m['operator'])}</h3>"
                     f"<p class=\"note\">ran: {esc(', '.join(m.get('scenarios_ran', [])))}</p>"
                     + pre(_diff_body(m.get("diff", ""))))
    return "\n".join(parts)


def _all(mutants: Sequence[Mapping[str, Any]]) -> str:
    if not mutants:
        return '<p class="note">No mutant judged yet.</p>'
    rows = [[esc(f"{m['file']}:{m['line']}"), esc(m["operator"]), esc(m["outcome"]),
             esc(m.get("detail", "")), esc("—" if m.get("seconds") is None else m["seconds"])]
            for m in mutants]
    return table(["where", "operator", "outcome", "why", "s"], rows, numeric=(4,))


def _diff_body(diff: str) -> str:
    """The unified diff without cosmic-ray's header line."""
    return "\n".join(line for line in diff.splitlines() if line != "--- mutation diff ---")


def write_mutation_report(summary: Mapping[str, Any], folder: Path) -> Path:
    out = folder / MUTATION_HTML
    out.write_text(render_mutation(summary), encoding="utf-8")
    return out
