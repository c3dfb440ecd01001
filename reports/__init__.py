"""HTML reliability reports, rendered only from saved run folders.

``write_run_report(run_dir)`` writes one self-contained page per run
(``report.html`` in the run folder): verdicts and witnesses, a timeline with
one lane per worker incarnation (aggregated for a soak), throughput and
latency over time with the faults shaded, recovery latency, calls per chunk,
fault coverage, the schedule, the seed, the replay command and the log tails.
``write_index([runs_root])`` writes ``index.html`` across every run there:
the verdict per scenario and its trend over repeated runs.

Layers: this package reads run folders through ``harness.history`` and the
checkers' result types; it never starts anything, never imports the CLI, and
the worker (``system_under_test``) never imports it. Pages are one file each,
with no script and nothing fetched from the network, so they open offline.
"""

from reports.index_page import INDEX_FILE, render_index, write_index
from reports.run_page import REPORT_FILE, render_run, write_run_report
from reports.rundata import ReportError, is_run_folder

__all__ = ["INDEX_FILE", "REPORT_FILE", "ReportError", "is_run_folder", "render_index",
           "render_run", "write_index", "write_run_report"]
