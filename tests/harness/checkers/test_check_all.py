"""The checker set as a whole: verdict rules, expectations, run_checkers, and a 100k history."""

from __future__ import annotations

import pytest

from harness.checkers import (
    CheckResult,
    Expectations,
    Verdict,
    combine,
)
from harness.checkers.base import MAX_DETAILS, Findings, tally, tally_words
from harness.errors import ScenarioError
from harness.history import History
from tests.harness.checkers.builders import (
    REFERENCE_CHECKERS,
    RunBuilder,
    check_reference,
    exhaust_retries,
    one_job,
)

EXPECTED_NAMES = [
    "jobs_settled",
    "none_lost",
    "jobs_terminal",
    "failure_justified",
    "transcript_exact",
    "chunk_committed_once",
    "external_work_per_chunk",
    "no_work_after_commit",
    "recovery_paired",
    "events_ordered",
    "events_once",
    "progress_monotonic",
    "counters_agree",
    "stale_epoch_rejected",
    "takeover_justified",
    "retry_accounting",
    "state_index_exclusive",
    "indexes_consistent",
    "timeout_enforced",
    "upload_byte_exact",
    "fault_coverage",
    "graceful_stop_honoured",
]


def test_invalid_beats_unknown_beats_valid() -> None:
    assert combine([Verdict.VALID, Verdict.UNKNOWN, Verdict.INVALID]) is Verdict.INVALID
    assert combine([Verdict.UNKNOWN, Verdict.VALID]) is Verdict.UNKNOWN
    assert combine([Verdict.VALID, Verdict.VALID]) is Verdict.VALID
    assert combine([]) is Verdict.VALID


def test_not_applicable_never_changes_the_combined_verdict() -> None:
    na = Verdict.NOT_APPLICABLE
    assert combine([na, na]) is Verdict.VALID
    assert combine([na, Verdict.UNKNOWN]) is Verdict.UNKNOWN
    assert combine([Verdict.INVALID, na]) is Verdict.INVALID


def test_tally_counts_the_four_verdicts_apart_and_says_them_in_words() -> None:
    verdicts = [Verdict.VALID] * 12 + [Verdict.UNKNOWN] + [Verdict.NOT_APPLICABLE] * 3
    assert tally(verdicts) == {"valid": 12, "invalid": 0, "unknown": 1, "not_applicable": 3}
    assert tally_words(verdicts) == "12 held, 1 unknown, 3 not applicable"
    assert tally_words(["valid", "invalid"]) == "1 held, 1 invalid"


def test_findings_witness_is_the_first_of_the_worst_verdict() -> None:
    found = Findings("x")
    found.unknown("first unknown")
    found.invalid("first invalid")
    found.invalid("second invalid")

    result = found.result("fine")

    assert (result.verdict, result.witness) == (Verdict.INVALID, "first invalid")
    assert result.details == ("unknown: first unknown", "invalid: first invalid",
                              "invalid: second invalid")


def test_findings_cap_their_details_and_count_the_rest() -> None:
    found = Findings("x")
    for n in range(MAX_DETAILS + 7):
        found.invalid(f"violation {n}")

    result = found.result("fine")

    assert len(result.details) == MAX_DETAILS + 1
    assert result.details[-1] == "... and 7 more"


def test_expectations_parse_from_a_scenario_mapping() -> None:
    parsed = Expectations.from_json({"terminal_states": ["FAILED"], "max_retries": 0,
                                     "expect_failure_reason": "lost its worker",
                                     "expect_retry_count": 1,
                                     "idempotency_keys_honoured": False})
    assert parsed == Expectations(terminal_states=frozenset({"FAILED"}), max_retries=0,
                                  expect_failure_reason="lost its worker",
                                  expect_retry_count=1, idempotency_keys_honoured=False)
    assert Expectations.from_json(None) == Expectations()
    assert Expectations.from_json({"terminal_states": "CANCELLED"}).terminal_states == \
        frozenset({"CANCELLED"})
    assert Expectations.from_json(parsed.to_json()) == parsed


@pytest.mark.parametrize(("raw", "message"), [
    ({"terminal_state": ["FAILED"]}, "unknown field"),
    ({"max_retries": "3"}, "whole number"),
    ({"idempotency_keys_honoured": "no"}, "true or false"),
])
def test_malformed_expectations_name_the_problem(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ScenarioError, match=message):
        Expectations.from_json(raw)


def test_all_checkers_are_listed_once_in_order() -> None:
    assert [checker.name for checker in REFERENCE_CHECKERS] == EXPECTED_NAMES


def test_run_checkers_on_a_recovered_run_is_all_valid() -> None:
    run = one_job()

    results = check_reference(run.history(), run.state())

    assert [r.checker for r in results] == EXPECTED_NAMES
    assert all(isinstance(r, CheckResult) for r in results)
    expected = dict.fromkeys(EXPECTED_NAMES, Verdict.VALID)
    expected["upload_byte_exact"] = Verdict.NOT_APPLICABLE  # a transcription-only run
    expected["graceful_stop_honoured"] = Verdict.NOT_APPLICABLE  # nothing got a SIGTERM
    assert {r.checker: r.verdict for r in results} == expected


def test_run_checkers_takes_expectations_from_the_final_state() -> None:
    run = one_job()
    exhaust_retries(run)

    assert combine(r.verdict for r in check_reference(run.history(), run.state())) \
        is Verdict.INVALID  # COMPLETED expected by default
    run.expect = {"terminal_states": ["FAILED"], "expect_failure_reason": "lost its worker",
                  "max_retries": 0, "expect_retry_count": 1}
    results = check_reference(run.history(), run.state())
    assert [r.checker for r in results
            if r.verdict in (Verdict.INVALID, Verdict.UNKNOWN)] == []


def test_a_history_breaking_the_schema_makes_the_readers_unknown() -> None:
    run = one_job()
    run.event(event="chunk_committed", chunk=0)["epoch"] = "one"

    results = {r.checker: r for r in check_reference(run.history(), run.state())}

    assert results["events_ordered"].verdict is Verdict.UNKNOWN
    assert "does not follow the schema" in results["events_ordered"].witness
    assert "'epoch'" in results["events_ordered"].witness
    assert results["state_index_exclusive"].verdict is Verdict.VALID


def test_all_checkers_pass_a_valid_100k_entry_history() -> None:
    run = RunBuilder(scenario="bulk", seed=1)
    n = 0
    while len(run.timeline) + len(run.stream) < 100_000:
        run.add_job(f"job-{n}", chunks=20, crash_after=None if n % 2 else n % 19,
                    words_per_chunk=1)
        n += 1
    history = run.history()
    assert len(history) > 100_000

    results = check_reference(history, run.state())

    assert [r for r in results if r.verdict in (Verdict.INVALID, Verdict.UNKNOWN)] == []
    assert f"({n})" in results[0].witness


def test_history_built_from_records_matches_the_builder_records() -> None:
    run = one_job()
    history = run.history()
    assert isinstance(history, History)
    assert [e.to_json() for e in history] == run.records()
