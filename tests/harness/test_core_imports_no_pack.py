"""The core never imports a pack: imports run from packs to the core, never back."""

from __future__ import annotations

import ast
from pathlib import Path

import harness

CORE = Path(harness.__file__).parent
PACKS = CORE / "packs"


def imports(source: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            # ``from harness import packs`` reaches a pack as well
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_no_core_module_imports_a_pack() -> None:
    core = [p for p in CORE.rglob("*.py") if PACKS not in p.parents]
    assert len(core) > 60  # the walk really found the core
    offenders = {str(p.relative_to(CORE)): sorted(n for n in imports(p)
                                                  if n.startswith("harness.packs."))
                 for p in core}
    assert not {k: v for k, v in offenders.items() if v}


def test_the_packs_import_the_core() -> None:
    packs = list(PACKS.rglob("*.py"))
    assert any("harness.target" in imports(p) for p in packs)


def test_the_check_sees_an_import_of_a_pack(tmp_path: Path) -> None:
    module = tmp_path / "bad.py"
    module.write_text("from harness.packs.reference.target import PHASES\n"
                      "import harness.packs.rq\n")
    assert {"harness.packs.reference.target", "harness.packs.rq"} <= imports(module)
