"""Benchmarks of the harness itself: how fast it explores, recovers, reports and judges.

``run_bench`` measures the figures of ``crashlab bench`` (listed in
``suite``: ten by default, ``scaling`` when named) on the process runtime
and returns one record; ``append_record`` keeps it in a JSON lines file so
runs can be compared.
"""

from harness.bench.suite import (
    DEFAULT_FIGURES,
    FIGURES,
    TARGETS,
    BenchOptions,
    append_record,
    run_bench,
)

__all__ = ["DEFAULT_FIGURES", "FIGURES", "TARGETS", "BenchOptions", "append_record", "run_bench"]
