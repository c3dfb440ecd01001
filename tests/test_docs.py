"""The operating guide: diagrams regenerate from their sources, and the docs name real things.

Each ``docs/diagrams/X.svg`` carries the sha256 of the ``X.dot`` it was drawn
from (``scripts/render_diagrams.py`` stamps it), and must be exactly what that
script renders now with the real ``dot``: an edited ``.dot`` without ``make
diagrams`` fails both checks. The stamp is checked without graphviz; the full
drawing needs ``dot``, whose absence skips here and fails in CI (``CI=true``).

The docs' facts are checked against the tree where a check can be mechanical:
every relative link resolves, every repository path in backticks exists,
every failpoint named in backticks is in the worker's catalog, and every
exit code of ``harness/errors.py``'s ``ExitCode`` is in the troubleshooting table.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
from pathlib import Path
from types import ModuleType

import pytest

from harness import errors
from system_under_test.failpoints import POINTS

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
DIAGRAMS = DOCS / "diagrams"
SOURCES = sorted(DIAGRAMS.glob("*.dot"))
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
TOP = ("harness", "system_under_test", "reports", "scenarios", "scripts", "tests", "docs")
PATH = re.compile(r"(?<![\w./<-])((?:" + "|".join(TOP) + r")/[\w./-]*\w)")


def _renderer() -> ModuleType:
    spec = importlib.util.spec_from_file_location("render_diagrams",
                                                  ROOT / "scripts" / "render_diagrams.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _dot() -> str:
    found = shutil.which("dot")
    if found is None:
        message = "graphviz's dot is missing: bash scripts/setup.sh installs Debian's graphviz"
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(message)
        pytest.skip(message)
    return found


def _ticked(page: Path) -> list[str]:
    return re.findall(r"`([^`\n]+)`", page.read_text(encoding="utf-8"))


def test_every_diagram_has_a_source_and_an_svg() -> None:
    assert len(SOURCES) >= 4
    for source in SOURCES:
        assert source.with_suffix(".svg").is_file(), f"{source.name}: run `make diagrams`"
    for svg in DIAGRAMS.glob("*.svg"):
        assert svg.with_suffix(".dot").is_file(), f"{svg.name} has no .dot source beside it"


@pytest.mark.parametrize("source", SOURCES, ids=[s.stem for s in SOURCES])
def test_diagram_svg_is_stamped_with_its_sources_hash(source: Path) -> None:
    render = _renderer()
    svg = source.with_suffix(".svg").read_text(encoding="utf-8")
    stamp = re.search(re.escape(render.MARK) + r"([0-9a-f]{64})", svg)
    assert stamp is not None, f"{source.stem}.svg has no source stamp: run `make diagrams`"
    assert stamp.group(1) == render.source_hash(source), (
        f"{source.name} changed since {source.stem}.svg was drawn: run `make diagrams`")


def test_diagram_svgs_are_what_dot_renders_now(tmp_path: Path) -> None:
    _dot()
    assert _renderer().main([str(tmp_path)]) == 0
    for source in SOURCES:
        fresh = (tmp_path / f"{source.stem}.svg").read_text(encoding="utf-8")
        committed = source.with_suffix(".svg").read_text(encoding="utf-8")
        assert fresh == committed, f"{source.stem}.svg is stale: run `make diagrams` and commit"


def test_readme_links_the_docs_and_every_link_resolves() -> None:
    assert "](docs/README.md)" in PAGES[0].read_text(encoding="utf-8")
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
            assert (page.parent / target).exists(), f"{page.name}: broken link {target}"


def test_every_repository_path_the_docs_name_exists() -> None:
    for page in PAGES[1:]:
        for text in _ticked(page):
            if "<" in text:
                continue  # a pattern such as runs/<time>-<scenario>/, not a path
            for path in PATH.findall(text):
                assert (ROOT / path).exists(), f"docs/{page.name} names {path}, which is gone"


def test_every_failpoint_the_docs_name_is_in_the_catalog() -> None:
    words = re.compile(r"^(job|chunking|chunk|assembly|recovery|lease|upload)\.[a-z_.]+$")
    named = {t for page in PAGES[1:] for t in _ticked(page) if words.match(t)}
    assert named, "the docs name no failpoint"
    assert named <= set(POINTS), f"not failpoints: {sorted(named - set(POINTS))}"


def test_troubleshooting_lists_every_exit_code_and_only_those() -> None:
    codes = {int(code) for code in errors.ExitCode}
    rows = (DOCS / "troubleshooting.md").read_text(encoding="utf-8").splitlines()
    listed = {int(m.group(1)) for row in rows if (m := re.match(r"\| (\d+)\b", row))}
    assert codes and listed == codes
