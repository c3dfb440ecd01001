"""Render docs/diagrams/*.dot to the SVG beside each, with the source's hash inside.

Run by ``make diagrams`` (or ``python scripts/render_diagrams.py [OUT_DIR]``).
Each SVG gets a comment ``<!-- crashlab-diagram-source sha256=HEX -->``
right after the XML declaration: tests/test_docs.py compares it with the
``.dot`` beside it (stale when they differ, with or without graphviz) and
renders every source again with the real ``dot`` to compare the drawing.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

DIAGRAMS = Path(__file__).resolve().parent.parent / "docs" / "diagrams"
MARK = "crashlab-diagram-source sha256="


def source_hash(source: Path) -> str:
    return hashlib.sha256(source.read_bytes()).hexdigest()


def render(source: Path, dot: str) -> str:
    """The SVG of ``source`` as ``dot -Tsvg`` draws it, with the source's hash added."""
    svg = subprocess.run([dot, "-Tsvg", source.name], capture_output=True, text=True,
                         check=True, cwd=source.parent).stdout
    head, _, rest = svg.partition("\n")
    return f"{head}\n<!-- {MARK}{source_hash(source)} -->\n{rest}"


def main(argv: list[str]) -> int:
    dot = shutil.which("dot")
    if dot is None:
        print("graphviz's dot is missing: bash scripts/setup.sh installs it", file=sys.stderr)
        return 3
    out = Path(argv[0]) if argv else DIAGRAMS
    out.mkdir(parents=True, exist_ok=True)
    for source in sorted(DIAGRAMS.glob("*.dot")):
        (out / f"{source.stem}.svg").write_text(render(source, dot), encoding="utf-8")
        print(f"{out / source.stem}.svg")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
