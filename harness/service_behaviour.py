"""The scenario's ``service`` block, checked against the target and put into effect.

``ServiceSpec`` (``harness.scenario``) says how the workload's external service
answers: its latency, whether it honours idempotency keys, whether it answers
its status endpoint. A target takes each through an optional protocol
(``harness.target``: ``LatencyTarget``, ``ServiceTarget``); a scenario asking a
target for what it cannot do is refused before anything starts (exit 3).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.errors import ScenarioError
from harness.target import LatencyTarget, ServiceTarget, Target

if TYPE_CHECKING:
    from harness.environment import Environment
    from harness.scenario import Scenario, ServiceSpec


def check_service(scenario: Scenario, target: Target) -> None:
    """``ScenarioError`` naming the field when ``target`` cannot behave as asked."""
    service = scenario.service
    if service.has_latency and not isinstance(target, LatencyTarget):
        raise ScenarioError(f"scenario {scenario.name}: service: {target.name} has no "
                            "external service that takes a latency")
    if service.has_behaviour and not isinstance(target, ServiceTarget):
        field = ("idempotency_keys" if service.idempotency_keys != "honoured"
                 else "status_endpoint")
        raise ScenarioError(f"scenario {scenario.name}: service.{field}: {target.name}'s "
                            "external service cannot be told to ignore keys or its status "
                            "endpoint; remove the field")


def configure_service(target: Target, env: Environment, service: ServiceSpec,
                      seed: int) -> None:
    """Make the target's service behave as ``service`` says, for a run with ``seed``
    (after its services started, or a session's reset put them back to defaults)."""
    if service.has_latency and isinstance(target, LatencyTarget):
        target.set_service_latency(env, service.latency(seed))
    if service.has_behaviour and isinstance(target, ServiceTarget):
        target.set_service_behaviour(env, honour_keys=service.idempotency_keys == "honoured",
                                     status_endpoint=service.status_endpoint)
