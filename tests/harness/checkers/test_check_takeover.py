"""takeover_justified: no takeover before the previous owner's lease could expire."""

from __future__ import annotations

from harness.checkers.base import Verdict
from tests.harness.checkers.builders import RunBuilder, check, checker_named, one_job

CHECKER = checker_named("takeover_justified")


def with_ttl(ttl_ms: int) -> RunBuilder:
    run = one_job()  # the builder's events are 7 ms apart
    run.run_start["settings"] = {"lease_ttl_ms": str(ttl_ms)}
    return run


def test_takeover_after_the_lease_is_valid() -> None:
    result = check(CHECKER, with_ttl(10))
    assert result.verdict is Verdict.VALID and result.witness.startswith("1 takeover")


def test_takeover_inside_the_lease_is_invalid_and_names_the_job() -> None:
    result = check(CHECKER, with_ttl(60_000))
    assert result.verdict is Verdict.INVALID
    assert result.witness.startswith("job job-1:") and "could not have expired" in result.witness


def test_takeover_without_a_ttl_in_the_settings_is_unknown_and_says_why() -> None:
    run = one_job()
    del run.run_start["settings"]
    result = check(CHECKER, run)
    assert result.verdict is Verdict.UNKNOWN and "do not name lease_ttl_ms" in result.witness


def test_run_without_a_takeover_is_not_applicable() -> None:
    result = check(CHECKER, one_job(crash_after=None))
    assert result.verdict is Verdict.NOT_APPLICABLE and "no job was taken over" in result.witness
