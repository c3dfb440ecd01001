"""Finding the modules that register fault kinds and checkers: the core's and the packs'.

A registry (``harness.faults.registry``, ``harness.checkers.registry``) is
filled by the modules themselves, as they are imported. ``import_all``
imports every module of the core package and every module an entry point
of the group names (a package there brings all its modules), so a pack adds
a fault kind or a checker by shipping a file and naming its package in its
``pyproject.toml``, and the core never imports a pack by name.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import pkgutil
from collections.abc import Iterable

from harness.errors import SetupError


def import_all(package: str, group: str, *, skip: Iterable[str] = ()) -> None:
    """Import each module of ``package`` (bar ``skip``) and of every ``group`` entry point."""
    _import_tree(package, frozenset(skip))
    for point in sorted(importlib.metadata.entry_points(group=group), key=lambda p: p.name):
        try:
            _import_tree(point.value, frozenset())
        except ImportError as exc:
            raise SetupError(f"the {group} entry point {point.name!r} names module "
                             f"{point.value!r}, which does not import: {exc}; reinstall the "
                             f"package that declares it") from None


def _import_tree(name: str, skip: frozenset[str]) -> None:
    module = importlib.import_module(name)
    path = getattr(module, "__path__", None)
    if path is None:
        return
    for info in sorted(pkgutil.iter_modules(path), key=lambda m: m.name):
        if info.name not in skip:
            _import_tree(f"{name}.{info.name}", frozenset())
