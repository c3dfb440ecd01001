"""events_once: no event is published twice for the same job, epoch and chunk or part.

Each of the worker's events says one thing happened once: an epoch is claimed,
planned, resumed, completed once; a chunk or a part is committed once. A
write applied twice (the retry of a command whose reply was lost, when the
script does not see that its effect is already there) publishes its event
twice, at the same epoch. Per job: two events with the same name, the same
epoch and the same ``chunk`` (or ``part``) in their data are a duplicate,
whatever their ``seq``. (``chunk_committed_once`` judges a chunk committed
again at another epoch.) A run without events is not applicable.
"""

from __future__ import annotations

from harness.checkers.base import CheckResult, Expectations, Findings, plural
from harness.checkers.registry import checker
from harness.history import FinalState, History, SutEvent


def item(event: SutEvent) -> str:
    """What the event is about within its epoch: `` chunk 3``, `` part 2`` or nothing."""
    for name in ("chunk", "part"):
        if event.data.get(name) is not None:
            return f" {name} {event.data[name]}"
    return ""


@checker(suite="reference", rank=85)
class EventsOnce:
    name = "events_once"

    def check(self, history: History, state: FinalState,
              expectations: Expectations) -> CheckResult:
        found = Findings(self.name)
        events = history.sut_events
        if not events:
            return found.not_applicable("the history has no worker events")
        first: dict[tuple[str, int, str, str], SutEvent] = {}
        for event in events:
            key = (event.job_id, event.epoch, event.event, item(event))
            earlier = first.setdefault(key, event)
            if earlier is not event:
                found.invalid(f"job {event.job_id}: {event.event}{item(event)} at epoch "
                              f"{event.epoch} was published twice: seq {earlier.seq} (worker "
                              f"{earlier.worker_id}) and seq {event.seq} (worker "
                              f"{event.worker_id})")
        return found.result(f"{plural(len(events), 'event')}, none published twice for the "
                            "same job, epoch and chunk or part")
