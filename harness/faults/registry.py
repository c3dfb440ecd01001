"""The fault kinds, each registered by its own module: one file makes a new kind.

A fault module declares its scenario-file spec (a ``FaultSpecModel`` whose
``kind`` is a one-word ``Literal``) and its ``Fault`` class, and puts
``@fault_kind(Spec, colour=...)`` on the class. ``kinds()`` finds every kind
(``harness.plugins``): each module of ``harness.faults`` and of every
``crashlab.faults`` entry point (how a pack brings its domain faults). The
scenario file's fault union, the list of kinds in errors and the report's
colours all derive from what registered here.

    @fault_kind(FreezeSpec, colour="#0550ae")
    class Freeze: ...
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Self, TypeVar, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)

from harness.errors import SetupError
from harness.plugins import import_all

if TYPE_CHECKING:
    from harness.faults.base import Fault

ENTRY_POINT_GROUP = "crashlab.faults"
"""Entry points whose values are modules that register fault kinds (a pack's domain faults)."""
DEFAULT_COLOUR = "#57606a"
_NOT_KINDS = frozenset({"base", "registry"})  # modules of harness.faults that hold no kind
TIMING_FIELDS = ("at_s", "every_s", "jitter_s", "times")


class FaultSpecModel(BaseModel):
    """The base of every fault spec: extra fields are refused, ``kind`` names it.

    Every kind can also be *timed* (``harness.nemesis``): ``at_s`` starts it that long
    after the workload starts, beside the other faults instead of after them;
    ``every_s`` fires it again and again (each repeat ``jitter_s`` earlier or later,
    drawn from the run's seed; at most ``times`` times) until the nemesis stops.
    """

    model_config = ConfigDict(extra="forbid")
    kind: str
    at_s: float | None = Field(None, ge=0, le=86_400,
                               description="a timed fault: first fired this long after the "
                                           "workload starts, beside the other faults")
    every_s: float | None = Field(None, gt=0, le=86_400,
                                  description="a timed fault fired again this often")
    jitter_s: float | None = Field(None, ge=0, le=86_400,
                                   description="each repeat up to this much earlier or later")
    times: int | None = Field(None, ge=1, le=1_000_000,
                              description="with every_s: fire at most this many times")

    @model_validator(mode="after")
    def _timing(self) -> Self:
        if self.every_s is None:
            for name in ("jitter_s", "times"):
                if getattr(self, name) is not None:
                    raise ValueError(f"{name} repeats a fault: give every_s as well")
        elif self.jitter_s is not None and self.jitter_s >= self.every_s:
            raise ValueError(f"jitter_s ({self.jitter_s}) must be shorter than every_s "
                             f"({self.every_s}), or repeats could come out of order")
        return self

    @model_serializer(mode="wrap")
    def _untimed_plain(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Dumped without the timing fields it does not use: an untimed fault reads as before."""
        data: dict[str, Any] = handler(self)
        for name in TIMING_FIELDS:
            if data.get(name) is None:
                data.pop(name, None)
        return data

    @property
    def timed(self) -> bool:
        """Fired by the nemesis's clock (``at_s``/``every_s``), not in schedule order."""
        return self.at_s is not None or self.every_s is not None


@dataclass(frozen=True)
class FaultKind:
    kind: str
    spec: type[FaultSpecModel]
    build: Callable[[str, Any], Fault]
    colour: str
    module: str


_KINDS: dict[str, FaultKind] = {}
_discovered = False

S = TypeVar("S", bound=FaultSpecModel)
C = TypeVar("C")


def fault_kind(spec: type[S], *, colour: str = DEFAULT_COLOUR) -> Callable[[type[C]], type[C]]:
    """Class decorator: register the decorated ``Fault`` class as the kind ``spec`` names.

    The class is built as ``cls(fault_id, spec_instance)``; ``colour`` marks the
    kind on the report's timeline.
    """
    kind = _kind_of(spec)

    def register(cls: type[C]) -> type[C]:
        known = _KINDS.get(kind)
        if known is not None and known.module != cls.__module__:
            raise SetupError(f"fault kind {kind!r} is registered twice: by {known.module} and "
                             f"by {cls.__module__}; rename one of them")
        _KINDS[kind] = FaultKind(kind, spec, cls, colour, cls.__module__)  # type: ignore[arg-type]
        return cls

    return register


def _kind_of(spec: type[FaultSpecModel]) -> str:
    field = spec.model_fields.get("kind")
    values = get_args(field.annotation) if field is not None else ()
    if len(values) != 1 or not isinstance(values[0], str):
        raise SetupError(f"fault spec {spec.__name__} must declare its kind as one literal "
                         f"string, e.g. kind: Literal['my_fault']")
    return values[0]


def kinds() -> Mapping[str, FaultKind]:
    """Every registered fault kind by name, sorted by name."""
    global _discovered
    if not _discovered:
        _discovered = True
        import_all("harness.faults", ENTRY_POINT_GROUP, skip=_NOT_KINDS)
    return dict(sorted(_KINDS.items()))


def fault_colour(kind: str) -> str:
    """The colour a kind is drawn in (grey for a kind nobody registered)."""
    found = kinds().get(kind)
    return found.colour if found is not None else DEFAULT_COLOUR


def build(fault_id: str, spec: FaultSpecModel) -> Fault:
    """The ``Fault`` for a validated spec."""
    found = kinds().get(spec.kind)
    if found is None or not isinstance(spec, found.spec):
        raise SetupError(f"fault {fault_id}: no registered fault kind builds {spec!r}")
    return found.build(fault_id, spec)
