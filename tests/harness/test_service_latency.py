"""A scenario's service latency: the log-normal model, the real billing service that
takes it, and a run whose transcription calls all wait for it."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from harness.checkers.base import Verdict
from harness.errors import ScenarioError
from harness.procs import ProcessRegistry
from harness.runner import check_workload, run_scenario
from harness.scenario import parse_scenario
from harness.services.billing import BillingService
from harness.services.latency import LatencyModel


def test_the_model_has_the_median_and_p99_it_was_given() -> None:
    model = LatencyModel(median_ms=200, p99_ms=2000, seed=5)
    draws = sorted(model.sample_s() * 1000 for _ in range(20_000))
    assert statistics.median(draws) == pytest.approx(200, rel=0.05)
    assert draws[int(0.99 * len(draws))] == pytest.approx(2000, rel=0.1)
    first = LatencyModel(median_ms=200, p99_ms=2000, seed=5)
    second = LatencyModel(median_ms=200, p99_ms=2000, seed=5)
    assert [first.sample_s() for _ in range(10)] == [second.sample_s() for _ in range(10)]
    assert LatencyModel(median_ms=80, seed=1).sample_s() == 0.08  # no p99: always the median
    assert LatencyModel().sample_s() == 0.0


def test_a_p99_below_the_median_is_refused() -> None:
    with pytest.raises(ValueError, match="p99_ms"):
        LatencyModel(median_ms=100, p99_ms=50)
    with pytest.raises(ValueError, match="unknown latency field"):
        LatencyModel.from_dict({"median": 100})
    with pytest.raises(ScenarioError, match="latency_p99_ms"):
        parse_scenario("name: s\ndescription: d\n"
                       "service: {latency_median_ms: 100, latency_p99_ms: 10}\n", "s.yaml")


@pytest.fixture
def billing(tmp_path: Path, registry: ProcessRegistry) -> Iterator[BillingService]:
    service = BillingService(tmp_path / "billing", registry).start()
    try:
        yield service
    finally:
        service.stop()


def test_the_billing_service_charges_at_once_and_answers_after_the_latency(
        billing: BillingService) -> None:
    billing.set_latency(LatencyModel(median_ms=500, seed=2))
    started = time.time()
    with httpx.Client(timeout=0.2) as client, pytest.raises(httpx.ReadTimeout):
        client.post(f"{billing.url}/charge", json={"job": "j1", "key": "j1"})
    # the client gave up; the charge was made and logged before the answer was due
    (call,) = billing.calls()
    assert call["job"] == "j1" and call["billed"] and call["ts"] - started < 0.2
    started = time.monotonic()
    answer = httpx.post(f"{billing.url}/charge", json={"job": "j2", "key": "j2"}, timeout=5)
    assert answer.status_code == 200 and time.monotonic() - started >= 0.5
    billing.reset()
    started = time.monotonic()
    httpx.post(f"{billing.url}/charge", json={"job": "j3", "key": "j3"}, timeout=5)
    assert time.monotonic() - started < 0.5
    refused = httpx.post(f"{billing.url}/latency", json={"median_ms": 9, "p99_ms": 1})
    assert refused.status_code == 422 and "p99_ms" in refused.text


def test_a_target_without_a_service_latency_refuses_the_scenario() -> None:
    scenario = parse_scenario("name: slow\ndescription: d\n"
                              "service: {latency_median_ms: 100}\n", "slow.yaml")
    plain = SimpleNamespace(name="plain", workload_kinds=frozenset({"transcribe"}))
    with pytest.raises(ScenarioError, match="service: plain has no external service"):
        check_workload(scenario, plain)  # type: ignore[arg-type]


@pytest.mark.slow
@pytest.mark.chaos
@pytest.mark.timeout(180)
def test_every_transcription_call_of_a_run_waits_the_scenario_latency(
        tmp_path: Path, registry: ProcessRegistry) -> None:
    scenario = parse_scenario(
        "name: slow-service\ndescription: two jobs against a service with 300 ms latency\n"
        "workload: {jobs: 2, media_seconds: 3}\n"
        "service: {latency_median_ms: 300, latency_p99_ms: 600}\n", "slow-service.yaml")
    result = run_scenario(scenario, seed=4, registry=registry, runs_root=tmp_path)
    assert result.verdict is Verdict.VALID, [c.witness for c in result.checks]
    log = result.run_dir / "transcription" / "transcription-calls.jsonl"
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    work = [c for c in calls if c["outcome"] == "new"]
    assert len(work) == 6
    # a log-normal with median 300 ms and p99 600 ms: no draw below ~120 ms in six
    assert all(c["duration_ms"] >= 100 for c in work), [c["duration_ms"] for c in work]
    assert statistics.median(c["duration_ms"] for c in work) >= 150
