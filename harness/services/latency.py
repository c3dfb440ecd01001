"""How long an external service takes to answer: a seeded log-normal latency.

A scenario's ``service`` block gives a median and, optionally, a 99th
percentile (``harness.scenario.ServiceSpec``); the services the harness runs
(the reference pack's transcription service, the queue packs' billing service)
delay each answer by a latency drawn here, so that jobs take real time and
faults meet jobs in flight.

A log-normal with median ``m`` has ``mu = ln m``; its 99th percentile is
``exp(mu + z99 * sigma)`` with ``z99`` the standard normal's 99th percentile,
so ``sigma = ln(p99 / m) / z99``. Without a p99 every answer takes the median.
Draws come from a ``random.Random`` seeded by the run's seed: the same run
asks for the same sequence of latencies, though which call gets which one
depends on the order calls arrive in, which the workers' timing decides.

Both services take the model on an admin endpoint as a JSON object with the
fields of ``LatencyModel`` (``median_ms``, ``p99_ms``, ``seed``); a median of
0 turns latency off, and a service's reset forgets the model.
"""

from __future__ import annotations

import math
import random
import threading
from dataclasses import dataclass, field
from typing import Any

Z99 = 2.3263478740408408
"""The standard normal's 99th percentile."""


@dataclass
class LatencyModel:
    median_ms: float = 0.0
    p99_ms: float | None = None
    seed: int = 0
    _random: random.Random = field(init=False, repr=False, compare=False)
    _lock: threading.Lock = field(init=False, repr=False, compare=False,
                                  default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if self.median_ms < 0:
            raise ValueError(f"median_ms must be at least 0, not {self.median_ms}")
        if self.p99_ms is not None and self.p99_ms < self.median_ms:
            raise ValueError(f"p99_ms ({self.p99_ms}) must be at least median_ms "
                             f"({self.median_ms})")
        self._random = random.Random(self.seed)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LatencyModel:
        """The model from its JSON form; ``ValueError`` on a bad field."""
        unknown = set(data) - {"median_ms", "p99_ms", "seed"}
        if unknown:
            raise ValueError(f"unknown latency field(s): {', '.join(sorted(unknown))}")
        p99 = data.get("p99_ms")
        return cls(median_ms=float(data.get("median_ms", 0)),
                   p99_ms=None if p99 is None else float(p99), seed=int(data.get("seed", 0)))

    def as_dict(self) -> dict[str, Any]:
        return {"median_ms": self.median_ms, "p99_ms": self.p99_ms, "seed": self.seed}

    @property
    def active(self) -> bool:
        return self.median_ms > 0

    @property
    def sigma(self) -> float:
        if not self.active or self.p99_ms is None or self.p99_ms == self.median_ms:
            return 0.0
        return math.log(self.p99_ms / self.median_ms) / Z99

    def sample_s(self) -> float:
        """The next latency, in seconds (threads may share a model)."""
        if not self.active:
            return 0.0
        sigma = self.sigma
        if sigma == 0.0:
            return self.median_ms / 1000
        with self._lock:
            return self._random.lognormvariate(math.log(self.median_ms), sigma) / 1000
