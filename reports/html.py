"""HTML building blocks shared by the run report and the index: page, sections, tables.

Pages are self-contained: one file, the style sheet inline, charts inline as
SVG, no script, no font or image fetched from anywhere, so a report opens
offline and from a CI artifact as it is. Every piece of text that comes from
a run (witnesses, log lines, job ids, parameters) goes through ``esc``;
functions here take plain text unless their argument is named ``html`` or
``cells_html``.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence

from reports.charts import VERDICT_COLORS

CSS = """
:root { --fg: #1f2328; --muted: #59636e; --line: #d1d9e0; --soft: #f6f8fa;
  --valid: %(valid)s; --invalid: %(invalid)s; --unknown: %(unknown)s;
  --incomplete: %(incomplete)s; --not_applicable: %(not_applicable)s; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--fg); background: #fff;
  font: 14px/1.5 -apple-system, "Segoe UI", "Liberation Sans", "DejaVu Sans", Arial,
  sans-serif; }
main { max-width: 1240px; margin: 0 auto; padding: 20px 28px 60px; }
header.top { display: flex; justify-content: space-between; align-items: baseline;
  gap: 16px; flex-wrap: wrap; }
header.top h1 { font-size: 22px; margin: 0; }
header.top .meta { color: var(--muted); font-size: 13px; }
h2 { font-size: 17px; margin: 0 0 10px; padding-bottom: 6px;
  border-bottom: 1px solid var(--line); }
h3 { font-size: 14px; margin: 16px 0 6px; }
section { margin: 26px 0; }
p.note { color: var(--muted); margin: 6px 0 10px; }
.banner { margin: 16px 0 8px; padding: 16px 20px; border-radius: 8px; color: #fff;
  display: flex; gap: 20px; align-items: center; flex-wrap: wrap; }
.banner .word { font-size: 28px; font-weight: 700; letter-spacing: 0.04em;
  text-transform: uppercase; }
.banner .what { font-size: 15px; flex: 1 1 400px; }
.banner .what div + div { opacity: 0.92; font-size: 14px; margin-top: 2px; }
.bg-valid { background: var(--valid); } .bg-invalid { background: var(--invalid); }
.bg-unknown { background: var(--unknown); } .bg-incomplete { background: var(--incomplete); }
.bg-not_applicable { background: var(--not_applicable); color: #24292f; }
.badge { display: inline-block; min-width: 70px; text-align: center; padding: 1px 8px;
  border-radius: 10px; color: #fff; font-size: 12px; font-weight: 600; }
nav.toc { font-size: 13px; margin: 8px 0 0; }
nav.toc a { color: #0969da; text-decoration: none; margin-right: 14px; white-space: nowrap; }
table { border-collapse: collapse; width: 100%%; font-size: 13px; }
th, td { text-align: left; padding: 5px 10px; border-bottom: 1px solid var(--line);
  vertical-align: top; }
th { background: var(--soft); font-weight: 600; white-space: nowrap; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.hl td { background: #fff8c5; }
tr.na td { color: var(--muted); }
tr.bad td { background: #ffebe9; }
code, pre, .mono { font-family: ui-monospace, "DejaVu Sans Mono", "Liberation Mono",
  Menlo, monospace; font-size: 12.5px; }
pre { background: var(--soft); border: 1px solid var(--line); border-radius: 6px;
  padding: 10px 12px; overflow-x: auto; margin: 6px 0; white-space: pre; }
pre.cmd { background: #0d1117; color: #e6edf3; border-color: #0d1117; }
pre.log { max-height: 420px; overflow: auto; font-size: 12px; line-height: 1.45;
  white-space: pre-wrap; overflow-wrap: anywhere; }
details { margin: 6px 0; }
details > summary { cursor: pointer; font-weight: 600; }
.chart svg { max-width: 100%%; height: auto; display: block; }
.chart { margin: 6px 0 10px; }
dl.kv { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; margin: 0; }
dl.kv dt { color: var(--muted); } dl.kv dd { margin: 0; }
.cards { display: flex; gap: 12px; flex-wrap: wrap; margin: 10px 0; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: 10px 14px;
  min-width: 150px; }
.card .n { font-size: 22px; font-weight: 700; }
.card .l { color: var(--muted); font-size: 12px; }
.counterexample { border: 2px solid var(--invalid); border-radius: 8px; padding: 12px 18px; }
.problems { border-left: 4px solid var(--unknown); background: #fff8c5; padding: 8px 14px; }
.trend a { display: inline-block; width: 13px; height: 13px; margin-right: 2px;
  border-radius: 3px; vertical-align: middle; }
a { color: #0969da; }
@media print { pre.log { max-height: none; } }
""" % {key: value for key, value in VERDICT_COLORS.items()}


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def page(title: str, body_html: str) -> str:
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{esc(title)}</title>\n<style>{CSS}</style>\n</head>\n"
            f"<body>\n<main>\n{body_html}\n</main>\n</body>\n</html>\n")


def section(anchor: str, title: str, body_html: str, note: str | None = None) -> str:
    intro = f'<p class="note">{esc(note)}</p>' if note else ""
    return (f'<section id="{esc(anchor)}">\n<h2>{esc(title)}</h2>\n{intro}\n{body_html}\n'
            "</section>")


def toc(entries: Iterable[tuple[str, str]]) -> str:
    links = "".join(f'<a href="#{esc(anchor)}">{esc(title)}</a>' for anchor, title in entries)
    return f'<nav class="toc">{links}</nav>'


def verdict_word(verdict: str | None) -> str:
    return "incomplete" if verdict is None else str(verdict)


def badge(verdict: str | None) -> str:
    word = verdict_word(verdict)
    shown = "not applicable" if word == "not_applicable" else word
    return f'<span class="badge bg-{esc(word)}">{esc(shown)}</span>'


def banner(verdict: str | None, headline: str, detail: str | None = None) -> str:
    word = verdict_word(verdict)
    extra = f"<div>{esc(detail)}</div>" if detail else ""
    return (f'<div class="banner bg-{esc(word)}" id="verdict"><div class="word">{esc(word)}'
            f'</div><div class="what"><div>{esc(headline)}</div>{extra}</div></div>')


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], *,
          numeric: Sequence[int] = (), row_classes: Sequence[str] | None = None) -> str:
    """A table of ready-made HTML cells (escape text with ``esc`` first); ``numeric`` column
    indices are right-aligned."""
    head = "".join(f'<th class="num">{esc(h)}</th>' if i in numeric else f"<th>{esc(h)}</th>"
                   for i, h in enumerate(headers))
    body = []
    for r, cells_html in enumerate(rows):
        css = row_classes[r] if row_classes is not None and r < len(row_classes) else ""
        cells = "".join(f'<td class="num">{cell}</td>' if i in numeric else f"<td>{cell}</td>"
                        for i, cell in enumerate(cells_html))
        body.append(f'<tr class="{css}">{cells}</tr>' if css else f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def chart(svg_html: str) -> str:
    return f'<div class="chart">{svg_html}</div>'


def cards(items: Iterable[tuple[str, str]]) -> str:
    """Big-number cards: (value, label) pairs, both plain text."""
    inner = "".join(f'<div class="card"><div class="n">{esc(value)}</div>'
                    f'<div class="l">{esc(label)}</div></div>' for value, label in items)
    return f'<div class="cards">{inner}</div>'


def key_values(items: Iterable[tuple[str, str]]) -> str:
    """A definition list of (label, ready-made HTML) pairs."""
    inner = "".join(f"<dt>{esc(key)}</dt><dd>{value}</dd>" for key, value in items)
    return f'<dl class="kv">{inner}</dl>'


def pre(text: str, css: str = "") -> str:
    cls = f' class="{esc(css)}"' if css else ""
    return f"<pre{cls}>{esc(text)}</pre>"


def seconds(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f} s"


def offset(value: float | None) -> str:
    """A time since the run started, as ``+1.234 s``."""
    return "—" if value is None else f"+{value:.3f} s"
