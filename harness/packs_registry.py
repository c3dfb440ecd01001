"""Finding a pack by name: the ``crashlab.packs`` entry points, or ``module:attr``.

The core never imports a pack; it asks here. A name is looked up in the
``crashlab.packs`` entry-point group (this project registers ``reference``,
``rq`` and ``arq`` in its ``pyproject.toml``; a third-party pack registers
its own the same way); ``module:attr`` imports ``attr`` from ``module``
(a user's adapter in their own repository). Either way the object found is
called with no arguments and must give a ``Target``; anything else is a
``SetupError`` naming the target, the problem and the fix (exit 3).
"""

from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Callable
from typing import Any, cast

from harness.errors import CrashlabError, SetupError
from harness.target import MutantTarget, Target

GROUP = "crashlab.packs"
DEFAULT_TARGET = "reference"

# what the core calls on every target; a pack missing one is refused at once
REQUIRED = ("name", "phases", "api_argv", "worker_argv", "environment", "start_services",
            "submit_workload", "job_ids", "snapshot", "collect", "checkers", "read_events",
            "reset", "effects", "recovery_limit_s", "default_settings", "repeating_points",
            "after_crash_points", "workload_kinds")


def pack_names() -> list[str]:
    """Every pack registered in the ``crashlab.packs`` group."""
    return sorted({entry.name for entry in importlib.metadata.entry_points(group=GROUP)})


def load_target(spec: str | None = None, *, mutant: str | None = None,
                **options: Any) -> Target:
    """The target named ``spec`` (a registered pack or ``module:attr``; default reference);
    with ``mutant``, its copy with that planted bug (``MutantTarget``).

    ``options`` go to the pack's factory.
    """
    spec = spec or DEFAULT_TARGET
    if mutant is not None:
        base = load_target(spec, **options)
        if not isinstance(base, MutantTarget):
            raise SetupError(f"target {spec!r} ships no planted bugs; --mutant is for a "
                             "target with mutants (the reference pack's: crashlab mutants)")
        try:
            return base.with_mutant(mutant)
        except CrashlabError as exc:
            raise SetupError(str(exc)) from exc
    factory = _factory(spec)
    try:
        target = factory(**options)
    except TypeError as exc:
        raise SetupError(f"target {spec!r}: could not be made with {sorted(options) or 'no'} "
                         f"options: {exc}") from exc
    missing = [member for member in REQUIRED if not hasattr(target, member)]
    if missing:
        raise SetupError(f"target {spec!r} ({type(target).__name__}) is missing "
                         f"{', '.join(missing)}; a target implements harness.target.Target "
                         "(see the README, 'Attack your own worker')")
    return cast(Target, target)


def _factory(spec: str) -> Callable[..., object]:
    if ":" in spec:
        module_name, _, attr = spec.partition(":")
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:  # noqa: BLE001 - any import failure is the user's to see
            raise SetupError(f"target {spec!r}: module {module_name!r} does not import "
                             f"({type(exc).__name__}: {exc}); is its folder on the path "
                             "(the [tool.crashlab] table's folder is added)?") from exc
        found = getattr(module, attr, None)
        if found is None:
            raise SetupError(f"target {spec!r}: module {module_name!r} has no {attr!r}")
        return cast(Callable[..., object], found)
    entries = [e for e in importlib.metadata.entry_points(group=GROUP) if e.name == spec]
    if not entries:
        known = ", ".join(pack_names()) or "none"
        raise SetupError(f"no target named {spec!r}; known packs: {known}; or name your own "
                         "adapter as module:attr")
    try:
        return cast(Callable[..., object], entries[0].load())
    except Exception as exc:  # noqa: BLE001 - a pack whose module fails is a setup error
        raise SetupError(f"pack {spec!r} ({entries[0].value}) does not import: "
                         f"{type(exc).__name__}: {exc}") from exc
