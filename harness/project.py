"""A user's repository: its ``[tool.crashlab]`` table, its target and its scenario catalog.

In the repository of the worker under attack, ``pyproject.toml`` says what
``crashlab run --all`` needs, so no flag is required there::

    [tool.crashlab]
    target = "rq"                      # a pack name, or module:attr (your own adapter)
    scenarios = "chaos"                # folder of scenario files (default: the pack's catalog)
    path = ["."]                       # folders your job modules import from (default ".")

    [tool.crashlab.settings]           # worker settings under every scenario's own
    job = "billing.tasks:charge"

The table is looked for in ``pyproject.toml`` of the current folder and its
parents. ``--target`` on the command line wins over the table; without
either the target is the ``reference`` pack. A scenario file that names
another target than the one chosen is refused (``runner.check_workload``).
"""

from __future__ import annotations

import importlib.resources
import os
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import ScenarioError, SetupError
from harness.packs_registry import DEFAULT_TARGET
from harness.scenario import Scenario, load_scenario_file, parse_scenario

KNOWN_KEYS = frozenset({"target", "scenarios", "path", "settings"})


@dataclass(frozen=True)
class Project:
    """What ``[tool.crashlab]`` says (all empty without one)."""

    root: Path | None = None
    target: str | None = None
    scenarios: Path | None = None
    path: tuple[Path, ...] = ()
    settings: dict[str, str] = field(default_factory=dict)

    def activate(self) -> None:
        """Make the project's folders importable here and in every worker started."""
        for folder in reversed(self.path):
            text = str(folder)
            if text not in sys.path:
                sys.path.insert(0, text)
            current = os.environ.get("PYTHONPATH", "")
            if text not in current.split(os.pathsep):
                os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (text, current) if p)

    def target_name(self, flag: str | None) -> str:
        return flag or self.target or DEFAULT_TARGET

    def with_settings(self, scenario: Scenario) -> Scenario:
        """``scenario`` with the table's settings under its own."""
        if not self.settings:
            return scenario
        return scenario.model_copy(update={"settings": {**self.settings, **scenario.settings}})


def find_project(start: Path | None = None) -> Project:
    """The ``[tool.crashlab]`` table of the nearest ``pyproject.toml``; ``SetupError`` naming
    the file and the key when it is malformed."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            return _read(candidate)
    return Project()


def _read(path: Path) -> Project:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SetupError(f"{path}: cannot be read as TOML: {exc}") from exc
    table = data.get("tool", {}).get("crashlab")
    if table is None:
        return Project()
    where = f"{path}: [tool.crashlab]"
    if not isinstance(table, dict):
        raise SetupError(f"{where} must be a table")
    unknown = sorted(set(table) - KNOWN_KEYS)
    if unknown:
        raise SetupError(f"{where}: unknown key(s) {unknown}; known: {sorted(KNOWN_KEYS)}")
    root = path.parent
    target = table.get("target")
    if target is not None and not isinstance(target, str):
        raise SetupError(f"{where}.target must be a pack name or module:attr, not {target!r}")
    scenarios = table.get("scenarios")
    if scenarios is not None and not isinstance(scenarios, str):
        raise SetupError(f"{where}.scenarios must be a folder, not {scenarios!r}")
    folder = None if scenarios is None else (root / scenarios).resolve()
    if folder is not None and not folder.is_dir():
        raise SetupError(f"{where}.scenarios: {folder} is not a folder")
    paths = table.get("path", ["."])
    if isinstance(paths, str):
        paths = [paths]
    if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        raise SetupError(f"{where}.path must be a folder or a list of folders")
    settings = table.get("settings", {})
    if not isinstance(settings, dict):
        raise SetupError(f"{where}.settings must be a table of worker settings")
    return Project(root, target, folder, tuple((root / p).resolve() for p in paths),
                   {str(k): str(v) for k, v in settings.items()})


def catalog_for(target: str, project: Project | None = None) -> dict[str, Scenario]:
    """The scenarios of ``target``: the project's folder, else the pack's shipped catalog
    (``scenarios/`` for the reference pack, ``scenarios/<pack>/`` for the others)."""
    if project is not None and project.scenarios is not None:
        return _folder_catalog(project.scenarios)
    base = importlib.resources.files("scenarios")
    folder = base if target == DEFAULT_TARGET else base.joinpath(target)
    found: dict[str, Scenario] = {}
    if not folder.is_dir():
        return found
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            label = f"scenarios/{entry.name}" if folder is base else \
                f"scenarios/{target}/{entry.name}"
            scenario = parse_scenario(entry.read_text(encoding="utf-8"), label)
            if scenario.name in found:
                raise ScenarioError(f"{label}: duplicate name {scenario.name!r}")
            found[scenario.name] = scenario
    return found


def _folder_catalog(folder: Path) -> dict[str, Scenario]:
    found: dict[str, Scenario] = {}
    for path in sorted(folder.glob("*.y*ml")):
        scenario = load_scenario_file(path)
        if scenario.name in found:
            raise ScenarioError(f"{path}: duplicate name {scenario.name!r}")
        found[scenario.name] = scenario
    if not found:
        raise ScenarioError(f"{folder} holds no scenario files (*.yaml)")
    return found


def resolve_for(name_or_path: str, target: str, project: Project | None = None) -> Scenario:
    """A scenario file, or a name in ``target``'s catalog."""
    path = Path(name_or_path)
    if name_or_path.endswith((".yaml", ".yml")) or path.is_file():
        return load_scenario_file(path)
    scenarios = catalog_for(target, project)
    if name_or_path not in scenarios:
        raise ScenarioError(f"no scenario named {name_or_path!r} for target {target}; "
                            f"`crashlab list --target {target}` shows them "
                            f"({', '.join(sorted(scenarios)) or 'none'})")
    return scenarios[name_or_path]
