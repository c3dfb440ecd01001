"""What every bench figure is made of: distributions of samples, and the machine they ran on.

Percentiles interpolate linearly between the closest ranks (numpy's default),
so the p95 of 20 samples lies between the 19th and the 20th. A bench record
always carries ``machine()``: the figures mean little without the number of
cores and how busy they were (the load average before and after).
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) of ``values``, interpolated; ``values`` not empty."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class Distribution:
    """Summary of samples in milliseconds."""

    n: int
    p50: float
    p95: float
    p99: float
    max: float

    @classmethod
    def of(cls, samples: Sequence[float]) -> Distribution:
        return cls(len(samples), percentile(samples, 50), percentile(samples, 95),
                   percentile(samples, 99), max(samples))

    def to_json(self) -> dict[str, Any]:
        return {"n": self.n, "p50": round(self.p50, 2), "p95": round(self.p95, 2),
                "p99": round(self.p99, 2), "max": round(self.max, 2)}


def machine() -> dict[str, Any]:
    """Cores, CPU model, memory, Python, kernel and the load average right now."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_gb = None
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        memory_gb = round(pages * size / 2**30, 1)
    except (ValueError, OSError):
        pass
    return {
        "cpus": os.cpu_count(), "cpu_model": model, "memory_gb": memory_gb,
        "python": sys.version.split()[0], "platform": platform.platform(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def source_revision(folder: Path) -> str | None:
    """The checked-out commit of ``folder`` (``+dirty`` when files changed), if it is a git
    checkout; read-only."""
    try:
        head = subprocess.run(["git", "-C", str(folder), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=5)
        if head.returncode != 0:
            return None
        status = subprocess.run(["git", "-C", str(folder), "status", "--porcelain",
                                 "--untracked-files=no"],
                                capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return head.stdout.strip() + ("+dirty" if status.stdout.strip() else "")
