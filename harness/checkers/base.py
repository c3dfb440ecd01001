"""What every checker shares: verdicts, results, expectations and the Checker protocol.

A checker reads the recorded ``History`` and the run's ``FinalState`` and
decides one invariant: ``valid`` (it held), ``invalid`` (the history or the
final state shows it broken; the witness says where), ``unknown`` (it had
something to judge and could not, e.g. a planned fault never fired: the
witness says why) or ``not_applicable`` (nothing of its kind ran, e.g. no
upload job: the witness says what was missing). Verdicts combine with
``combine``: invalid beats unknown beats valid; ``not_applicable`` never
changes the combination and never counts as an invariant that held
(``tally`` counts the four apart).

A witness is one plain sentence naming the job, chunk, events (by ``seq``,
worker and epoch) or expectation involved, so a reader can find the evidence
in ``history.jsonl`` without rerunning anything.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from harness.errors import ScenarioError
from harness.history import FinalState, History

DEFAULT_TERMINAL_STATES = frozenset({"COMPLETED"})

MAX_DETAILS = 50
"""How many violations a result lists in ``details`` before it only counts the rest."""


class Verdict(StrEnum):
    VALID = "valid"
    INVALID = "invalid"
    UNKNOWN = "unknown"
    NOT_APPLICABLE = "not_applicable"


_RANK = {Verdict.VALID: 0, Verdict.UNKNOWN: 1, Verdict.INVALID: 2}


def combine(verdicts: Iterable[Verdict | str]) -> Verdict:
    """The overall verdict: invalid beats unknown beats valid; ``not_applicable`` is left
    out; nothing to combine is valid."""
    judged = [Verdict(v) for v in verdicts if Verdict(v) is not Verdict.NOT_APPLICABLE]
    return max(judged, key=_RANK.__getitem__, default=Verdict.VALID)


TALLY_WORDS = {Verdict.VALID: "held", Verdict.INVALID: "invalid", Verdict.UNKNOWN: "unknown",
               Verdict.NOT_APPLICABLE: "not applicable"}


def tally(verdicts: Iterable[Verdict | str]) -> dict[str, int]:
    """How many of each verdict, in ``Verdict`` order, every verdict present as a key."""
    counts = {str(v): 0 for v in Verdict}
    for verdict in verdicts:
        counts[str(Verdict(verdict))] += 1
    return counts


def tally_words(verdicts: Iterable[Verdict | str]) -> str:
    """``12 held, 1 unknown, 3 not applicable`` (verdicts that did not occur are left out)."""
    counts = tally(verdicts)
    parts = [f"{counts[str(v)]} {TALLY_WORDS[v]}" for v in Verdict if counts[str(v)]]
    return ", ".join(parts) or "no checks"


@dataclass(frozen=True)
class CheckResult:
    """One checker's decision, with the evidence in words."""

    checker: str
    verdict: Verdict
    witness: str
    details: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.verdict is Verdict.VALID

    def to_json(self) -> dict[str, Any]:
        return {"checker": self.checker, "verdict": str(self.verdict), "witness": self.witness,
                "details": list(self.details)}


@dataclass(frozen=True)
class Expectations:
    """What a scenario expects of its jobs; the defaults describe a run that must fully recover.

    terminal_states            the states every submitted job must end in
    idempotency_keys_honoured  whether the transcription service dedupes repeated keys (if
                               not, a chunk may be billed again once per interruption)
    max_retries                the ``max_retries`` the jobs were submitted with; when set,
                               each job's snapshot must carry it
    expect_failure_reason      a FAILED job's error must contain this (e.g. "source_missing")
    expect_retry_count         every submitted job must end with exactly this many retries
    min_rejected_writes        the faults were meant to make a stale worker attempt at least
                               this many writes (all refused); fewer means the run did not
                               exercise fencing (unknown)
    effects                    how often each job's side effect must be applied
                               (``at_most_once``, ``at_least_once``, ``exactly_once``); None:
                               what the target promises (``run_start.effects``)
    """

    terminal_states: frozenset[str] = DEFAULT_TERMINAL_STATES
    idempotency_keys_honoured: bool = True
    max_retries: int | None = None
    expect_failure_reason: str | None = None
    expect_retry_count: int | None = None
    min_rejected_writes: int | None = None
    effects: str | None = None

    @classmethod
    def from_json(cls, raw: Mapping[str, Any] | None) -> Expectations:
        """Parse a scenario's (or ``state.json``'s) ``expect`` mapping; ``ScenarioError``
        naming the field on an unknown key or a wrong type."""
        if not raw:
            return cls()
        known = {"terminal_states", "idempotency_keys_honoured", "max_retries",
                 "expect_failure_reason", "expect_retry_count", "min_rejected_writes",
                 "effects"}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ScenarioError(f"expect: unknown field(s) {unknown}; known: {sorted(known)}")
        try:
            states = raw.get("terminal_states")
            return cls(
                terminal_states=(DEFAULT_TERMINAL_STATES if states is None
                                 else frozenset(str(s) for s in _as_list(states))),
                idempotency_keys_honoured=_as_bool(raw.get("idempotency_keys_honoured", True)),
                max_retries=_optional_int(raw.get("max_retries")),
                expect_failure_reason=(None if raw.get("expect_failure_reason") is None
                                       else str(raw["expect_failure_reason"])),
                expect_retry_count=_optional_int(raw.get("expect_retry_count")),
                min_rejected_writes=_optional_int(raw.get("min_rejected_writes")),
                effects=None if raw.get("effects") is None else str(raw["effects"]),
            )
        except (TypeError, ValueError) as exc:
            raise ScenarioError(f"expect: {exc}") from exc

    def to_json(self) -> dict[str, Any]:
        return {"terminal_states": sorted(self.terminal_states),
                "idempotency_keys_honoured": self.idempotency_keys_honoured,
                "max_retries": self.max_retries,
                "expect_failure_reason": self.expect_failure_reason,
                "expect_retry_count": self.expect_retry_count,
                "min_rejected_writes": self.min_rejected_writes, "effects": self.effects}


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple | set | frozenset):
        return list(value)
    raise TypeError(f"terminal_states must be a state or a list of states, not {value!r}")


def _as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise TypeError(f"idempotency_keys_honoured must be true or false, not {value!r}")


def _optional_int(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected a whole number, not {value!r}")
    return value


class Checker(Protocol):
    """One invariant, decided from the history and the final state."""

    name: str

    def check(self, history: History, state: FinalState,
              expectations: Expectations) -> CheckResult: ...


@dataclass
class Findings:
    """A checker's violations as it finds them; the first of the worst verdict is the witness."""

    checker: str
    _messages: list[str] = field(default_factory=list)
    _first: dict[Verdict, str] = field(default_factory=dict)
    _dropped: int = 0

    def invalid(self, message: str) -> None:
        self._add(Verdict.INVALID, message)

    def unknown(self, message: str) -> None:
        self._add(Verdict.UNKNOWN, message)

    def not_applicable(self, missing: str) -> CheckResult:
        """The result when the run had nothing of this checker's kind; ``missing`` says what."""
        return CheckResult(self.checker, Verdict.NOT_APPLICABLE, missing)

    def _add(self, verdict: Verdict, message: str) -> None:
        self._first.setdefault(verdict, message)
        if len(self._messages) < MAX_DETAILS:
            self._messages.append(f"{verdict}: {message}")
        else:
            self._dropped += 1

    @property
    def verdict(self) -> Verdict:
        return combine(self._first)

    def result(self, valid_witness: str) -> CheckResult:
        """The result: ``valid_witness`` says what held when nothing was found."""
        verdict = self.verdict
        if verdict is Verdict.VALID:
            return CheckResult(self.checker, verdict, valid_witness)
        details = list(self._messages)
        if self._dropped:
            details.append(f"... and {self._dropped} more")
        return CheckResult(self.checker, verdict, self._first[verdict], tuple(details))


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """``1 job``, ``3 jobs``; ``nouns`` for irregular plurals (``recoveries``)."""
    return f"{count} {noun}" if count == 1 else f"{count} {nouns or noun + 's'}"
