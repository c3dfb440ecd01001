"""The reports package reads saved run folders only: which harness modules it may import."""

from __future__ import annotations

import ast
from pathlib import Path

import reports

ALLOWED = {"harness.history", "harness.checkers.base", "harness.errors", "harness.runfolder",
           "harness.ledger"}
"""The run folder's types (history, final state, check results, the effects-ledger lines in the
history and which job a kill interrupted), its file names, the root error."""


def imported_modules(source: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_reports_import_only_the_run_folder_types_of_the_harness() -> None:
    package = Path(reports.__file__).parent
    modules = sorted(package.glob("*.py"))
    assert len(modules) >= 5
    for module in modules:
        for name in imported_modules(module):
            top = name.split(".")[0]
            assert top != "system_under_test", f"{module.name} imports {name}"
            if top == "harness":
                assert name in ALLOWED, f"{module.name} imports {name}; reports may use only " \
                                        f"{sorted(ALLOWED)}"


def test_the_ledger_reports_read_is_itself_only_history() -> None:
    import harness.ledger

    found = {name for name in imported_modules(Path(harness.ledger.__file__))
             if name.startswith("harness")}
    assert found == {"harness.history"}, found
