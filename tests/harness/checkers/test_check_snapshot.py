"""jobs_terminal, transcript_exact and state_index_exclusive on the final state."""

from __future__ import annotations

from harness.checkers import Expectations, Verdict
from harness.packs.reference.checkers.snapshot import (
    JobsTerminal,
    StateIndexExclusive,
    TranscriptExact,
    first_difference,
)
from tests.harness.checkers.builders import check, exhaust_retries, one_job

FAILED_BY_RETRIES = Expectations(terminal_states=frozenset({"FAILED"}),
                                 expect_failure_reason="lost its worker")

# -- jobs_terminal ------------------------------------------------------------


def test_recovered_completed_job_is_terminal() -> None:
    result = check(JobsTerminal(), one_job())
    assert result.verdict is Verdict.VALID
    assert "COMPLETED" in result.witness


def test_job_left_processing_is_invalid_and_names_job_and_state() -> None:
    run = one_job()
    run.replace_snapshot(state="PROCESSING", state_sets=["PROCESSING"])

    result = check(JobsTerminal(), run)

    assert result.verdict is Verdict.INVALID
    assert "job job-1 ended in PROCESSING" in result.witness
    assert "COMPLETED" in result.witness


def test_failed_job_shows_its_error_when_completion_was_expected() -> None:
    run = one_job()
    exhaust_retries(run)

    result = check(JobsTerminal(), run)

    assert result.verdict is Verdict.INVALID
    assert "job job-1 ended in FAILED (error: lost its worker 1 times" in result.witness


def test_submitted_job_missing_from_the_final_state_is_invalid() -> None:
    run = one_job()
    del run.snapshots["job-1"]

    result = check(JobsTerminal(), run)

    assert result.verdict is Verdict.INVALID
    assert "job job-1 was submitted" in result.witness
    assert "missing from the final state" in result.witness


def test_expected_failure_with_the_expected_reason_is_valid() -> None:
    run = one_job()
    exhaust_retries(run)
    assert check(JobsTerminal(), run, FAILED_BY_RETRIES).verdict is Verdict.VALID


def test_failure_with_another_reason_than_expected_is_invalid() -> None:
    run = one_job()
    exhaust_retries(run)
    run.replace_snapshot(error="source_missing: chunks [2] must be cut again")

    result = check(JobsTerminal(), run, FAILED_BY_RETRIES)

    assert result.verdict is Verdict.INVALID
    assert "job job-1 FAILED with error 'source_missing" in result.witness
    assert "'lost its worker'" in result.witness


def test_a_run_that_submitted_nothing_is_unknown() -> None:
    run = one_job()
    run.timeline = [r for r in run.timeline if r["kind"] != "op"]

    result = check(JobsTerminal(), run)

    assert result.verdict is Verdict.UNKNOWN
    assert "no job was submitted" in result.witness


def test_every_job_is_judged_not_just_the_first() -> None:
    run = one_job()
    run.add_job("job-2", chunks=3, crash_after=None)
    run.replace_snapshot("job-2", state="QUEUED", state_sets=["QUEUED"])

    result = check(JobsTerminal(), run)

    assert result.verdict is Verdict.INVALID
    assert "job job-2 ended in QUEUED" in result.witness
    assert len(result.details) == 1


# -- transcript_exact ---------------------------------------------------------


def test_exact_transcript_is_valid() -> None:
    assert check(TranscriptExact(), one_job()).verdict is Verdict.VALID


def test_changed_word_is_invalid_and_names_its_position() -> None:
    run = one_job()
    words = "alfa bravo charlie delta echo foxtrot golf hotel".split()
    assert run.snapshots["job-1"].transcript == " ".join(words)
    words[3] = "zulu"
    run.replace_snapshot(transcript=" ".join(words))

    result = check(TranscriptExact(), run)

    assert result.verdict is Verdict.INVALID
    assert result.witness.startswith("job job-1: transcript differs from the expected at word 3")
    assert "expected 'delta', got 'zulu'" in result.witness


def test_repeated_chunk_text_shows_as_extra_words() -> None:
    run = one_job()
    snap = run.snapshots["job-1"]
    run.replace_snapshot(transcript=f"{snap.transcript} golf hotel")

    result = check(TranscriptExact(), run)

    assert result.verdict is Verdict.INVALID
    assert "extra words from word 8 on, starting with 'golf'" in result.witness


def test_missing_chunk_text_shows_as_an_early_end() -> None:
    run = one_job()
    run.replace_snapshot(transcript="alfa bravo charlie delta echo foxtrot")

    result = check(TranscriptExact(), run)

    assert result.verdict is Verdict.INVALID
    assert "ends early: word 6 should be 'golf'" in result.witness


def test_completed_job_without_a_transcript_is_invalid() -> None:
    run = one_job()
    run.replace_snapshot(transcript=None)

    result = check(TranscriptExact(), run)

    assert result.verdict is Verdict.INVALID
    assert "job job-1 is COMPLETED but has no transcript" == result.witness


def test_completed_job_without_an_expected_transcript_is_unknown() -> None:
    run = one_job()
    run.of_kind("op")[0]["expected_transcript"] = None

    result = check(TranscriptExact(), run)

    assert result.verdict is Verdict.UNKNOWN
    assert "job job-1" in result.witness
    assert "no expected_transcript" in result.witness


def test_failed_job_is_not_compared() -> None:
    run = one_job()
    exhaust_retries(run)
    assert check(TranscriptExact(), run).verdict is Verdict.VALID


def test_whitespace_only_difference_is_named() -> None:
    assert first_difference("alfa bravo", "alfa  bravo") == (
        "transcript has the expected words but different whitespace")


# -- state_index_exclusive ----------------------------------------------------


def test_job_in_exactly_its_own_state_set_is_valid() -> None:
    assert check(StateIndexExclusive(), one_job()).verdict is Verdict.VALID


def test_job_in_two_state_sets_is_invalid_and_names_both() -> None:
    run = one_job()
    run.replace_snapshot(state_sets=["COMPLETED", "PROCESSING"])

    result = check(StateIndexExclusive(), run)

    assert result.verdict is Verdict.INVALID
    assert result.witness == ("job job-1 is COMPLETED but is in 2 state indices: "
                              "['COMPLETED', 'PROCESSING']")


def test_job_in_another_state_set_than_its_state_is_invalid() -> None:
    run = one_job()
    run.replace_snapshot(state_sets=["PROCESSING"])

    result = check(StateIndexExclusive(), run)

    assert result.verdict is Verdict.INVALID
    assert "job job-1 is COMPLETED but the state indices holding it are ['PROCESSING']" \
        == result.witness


def test_job_in_no_state_set_is_invalid() -> None:
    run = one_job()
    run.replace_snapshot(state_sets=[])

    result = check(StateIndexExclusive(), run)

    assert result.verdict is Verdict.INVALID
    assert result.witness == "job job-1 is COMPLETED but is in no state index"
