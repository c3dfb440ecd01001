"""The reference worker imports nothing of the harness but the failpoint helper users import,
and that helper needs nothing beyond the standard library."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import harness.failpoint
import system_under_test


def imported_modules(source: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_the_worker_uses_only_the_failpoint_helper_of_the_harness() -> None:
    modules = sorted(Path(system_under_test.__file__).parent.glob("*.py"))
    assert len(modules) > 10
    users = set()
    for module in modules:
        for name in imported_modules(module):
            assert name.split(".")[0] not in ("reports", "scenarios"), f"{module.name}: {name}"
            if name.split(".")[0] == "harness":
                assert name == "harness.failpoint", f"{module.name} imports {name}"
                users.add(module.name)
    assert users == {"failpoints.py"}


def test_the_failpoint_helper_needs_only_the_standard_library() -> None:
    names = imported_modules(Path(harness.failpoint.__file__))
    outside = {n for n in names if n.split(".")[0] not in sys.stdlib_module_names
               and n != "__future__"}
    assert not outside, f"harness/failpoint.py imports {sorted(outside)}"
    assert "asyncio" in names  # a real check: the parse found its imports
