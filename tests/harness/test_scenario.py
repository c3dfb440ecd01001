"""Scenario files: the catalog loads, and bad files fail naming file, field and fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import ScenarioError
from harness.packs.reference.target import ReferenceTarget
from harness.runner import check_phases
from harness.scenario import catalog, load_scenario_file, parse_scenario, resolve


def test_catalog_covers_the_design_cards_scenarios() -> None:
    names = set(catalog())
    expected = {
        "crash-after-transcription", "crash-before-any-chunk", "crash-after-all-chunks",
        "repeated-recovery", "recovery-event-structure", "crash-at-init",
        "crash-early-transcription", "crash-mid-transcription", "crash-late-transcription",
        "crash-during-finalize", "redis-lost-during-recovery", "concurrent-recovery",
        "corrupted-chunk-files", "retry-limit-reached", "service-answered-before-crash",
        "source-missing-on-resume", "zombie-worker",
    }
    assert expected <= names


def test_every_catalog_fault_names_a_phase_the_target_has() -> None:
    target = ReferenceTarget()
    for scenario in catalog().values():
        check_phases(scenario, target)


def test_unknown_phase_is_refused_with_the_known_ones() -> None:
    scenario = parse_scenario(
        "name: typo\ndescription: d\nfaults:\n"
        "  - {kind: kill_at_phase, point: chunk.comitted}\n", "typo.yaml")
    with pytest.raises(ScenarioError, match=r"faults.0.point: unknown phase 'chunk.comitted'"):
        check_phases(scenario, ReferenceTarget())


def test_unknown_field_names_the_file_the_field_and_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: bad\ndescription: d\nworkload: {jobs: 1, media_secs: 4}\n")
    with pytest.raises(ScenarioError) as info:
        load_scenario_file(path)
    message = str(info.value)
    assert str(path) in message
    assert "workload.media_secs" in message and "check its spelling" in message


def test_unknown_fault_kind_lists_the_kinds() -> None:
    with pytest.raises(ScenarioError,
                       match="unknown fault kind .explode.; the kinds are: .*kill_at_phase"):
        parse_scenario("name: x\ndescription: d\nfaults:\n  - {kind: explode}\n", "x.yaml")


def test_missing_description_and_bad_yaml_are_clear() -> None:
    with pytest.raises(ScenarioError, match=r"x.yaml: invalid scenario\n  description: "):
        parse_scenario("name: x\n", "x.yaml")
    with pytest.raises(ScenarioError, match="x.yaml: not valid YAML"):
        parse_scenario("name: [x\n", "x.yaml")
    with pytest.raises(ScenarioError, match="expected a mapping"):
        parse_scenario("- a\n- b\n", "x.yaml")


def test_resolve_unknown_name_suggests_crashlab_list() -> None:
    with pytest.raises(ScenarioError, match="crashlab list"):
        resolve("no-such-scenario")


def test_restart_redis_turns_on_aof() -> None:
    scenario = parse_scenario(
        "name: r\ndescription: d\nfaults:\n  - {kind: restart_redis}\n", "r.yaml")
    assert scenario.needs_aof
    assert not parse_scenario("name: s\ndescription: d\n", "s.yaml").needs_aof


@pytest.mark.parametrize(("kind", "old", "new"), [
    ("restart_redis", "down_ms", "duration_ms"),
    ("kill_random", "min_ms", "min_delay_ms"),
    ("kill_random", "max_ms", "max_delay_ms"),
])
def test_an_old_fault_field_name_is_refused_naming_the_new_one(kind: str, old: str,
                                                               new: str) -> None:
    text = f"name: x\ndescription: d\nfaults:\n  - {{kind: {kind}, {old}: 700}}\n"
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(text, "old.yaml")
    assert f"{old!r} was renamed {new!r}" in str(caught.value) and "old.yaml" in str(caught.value)


def test_stop_takes_a_phase_or_a_time_not_both() -> None:
    text = ("name: x\ndescription: d\nfaults:\n"
            "  - {kind: stop, point: chunk.committed, delay_ms: 100}\n")
    with pytest.raises(ScenarioError, match="either point"):
        parse_scenario(text, "stop.yaml")


def test_the_deploy_scenarios_stop_with_sigterm_and_a_grace() -> None:
    deploys = {name: resolve(name) for name in
               ("deploy-mid-job", "deploy-grace-too-short", "rolling-restart",
                "upload-deploy-mid-part")}
    kinds = {name: [f.kind for f in s.faults] for name, s in deploys.items()}
    assert kinds["rolling-restart"] == ["rolling_restart"]
    assert all(k == ["stop"] for n, k in kinds.items() if n != "rolling-restart")
    assert deploys["rolling-restart"].workers == 3
