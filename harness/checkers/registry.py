"""The checkers, each registered by its own module: one file makes a new invariant.

A checker module puts ``@checker(suite=..., rank=...)`` on its class; the
registry keeps one instance. A suite is a set a target asks for by name:
``queue`` (the job-queue invariants every pack can use), ``faults`` (every
planned fault fired and healed), a pack's own (``reference``). ``rank``
orders the report's rows across suites. ``suites()`` finds every checker
(``harness.plugins``): each module of ``harness.checkers`` and of every
``crashlab.checkers`` entry point (how a pack brings its domain checkers).

    @checker(suite="queue", rank=20)
    class NoneLost: ...
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from harness.errors import SetupError
from harness.plugins import import_all

if TYPE_CHECKING:
    from harness.checkers.base import Checker

ENTRY_POINT_GROUP = "crashlab.checkers"
"""Entry points whose values are modules that register checkers (a pack's domain checkers)."""
_NOT_CHECKERS = frozenset({"base", "registry"})


@dataclass(frozen=True)
class Registered:
    checker: Checker
    suite: str
    rank: int
    module: str


_CHECKERS: dict[str, Registered] = {}
_discovered = False

C = TypeVar("C")


def checker(*, suite: str, rank: int) -> Callable[[type[C]], type[C]]:
    """Class decorator: register one instance of the decorated class in ``suite``."""

    def register(cls: type[C]) -> type[C]:
        instance: Checker = cls()  # type: ignore[assignment]
        known = _CHECKERS.get(instance.name)
        if known is not None and known.module != cls.__module__:
            raise SetupError(f"checker {instance.name!r} is registered twice: by {known.module} "
                             f"and by {cls.__module__}; rename one of them")
        _CHECKERS[instance.name] = Registered(instance, suite, rank, cls.__module__)
        return cls

    return register


def registered() -> Mapping[str, Registered]:
    """Every registered checker by name."""
    global _discovered
    if not _discovered:
        _discovered = True
        import_all("harness.checkers", ENTRY_POINT_GROUP, skip=_NOT_CHECKERS)
    return dict(_CHECKERS)


def suite(*names: str, extra: Sequence[str] = ()) -> list[Checker]:
    """The checkers of the named suites and the ``extra`` checkers named one by one (a
    pack taking part of another suite), in report order (``rank``, then name)."""
    found = registered()
    known = {entry.suite for entry in found.values()}
    if missing := [name for name in names if name not in known]:
        raise SetupError(f"no checker suite named {', '.join(map(repr, missing))}; the suites "
                         f"are: {', '.join(sorted(known))}")
    if missing := [name for name in extra if name not in found]:
        raise SetupError(f"no checker named {', '.join(map(repr, missing))}; the checkers "
                         f"are: {', '.join(sorted(found))}")
    chosen = [entry for entry in found.values() if entry.suite in names or
              entry.checker.name in extra]
    return [entry.checker for entry in sorted(chosen, key=lambda e: (e.rank, e.checker.name))]
