"""The nemesis: every fault kind, its scenario-file spec, and how to build it.

One kind per module, registered by the module itself (``registry``): the
module holds the kind's spec (validated when the scenario file is loaded)
and its ``Fault`` implementation (``base``). ``FaultSpec``, the union a
scenario's ``faults:`` list is validated against, and ``FAULT_KINDS`` are
derived from the registry, pack faults (``crashlab.faults`` entry points)
included.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Union

from pydantic import Field

from harness.faults.base import Fault, FaultContext
from harness.faults.registry import FaultSpecModel, build, fault_colour, kinds

if TYPE_CHECKING:
    FaultSpec = FaultSpecModel
else:
    FaultSpec = Annotated[Union[tuple(k.spec for k in kinds().values())],  # noqa: UP007
                          Field(discriminator="kind")]

FAULT_KINDS: tuple[str, ...] = tuple(kinds())


def build_fault(fault_id: str, spec: FaultSpecModel) -> Fault:
    """The fault of one schedule entry, from its validated spec."""
    return build(fault_id, spec)


__all__ = ["FAULT_KINDS", "Fault", "FaultContext", "FaultSpec", "FaultSpecModel", "build_fault",
           "fault_colour"]
