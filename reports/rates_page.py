"""The report's parts about jobs over time: throughput and latency, and recovery after kills.

Both read only what every pack records (``reports.jobtimes``), so the
reference worker's, RQ's and arq's reports show the same section. A run with
too little to plot says so in a sentence, with the numbers it has, instead
of drawing an empty chart.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from reports.html import cards, chart, esc, offset, seconds, section, table
from reports.jobtimes import (
    JobSpan,
    bin_width,
    histogram,
    kill_recoveries,
    nearest_rank,
    rate_bins,
)
from reports.measures import median
from reports.rate_charts import MAX_INSTANT_LINES, rates_svg, recovery_svg
from reports.rundata import RunFolder
from reports.timeline import FaultMark, Timeline

MIN_RATE_JOBS = 5
"""Fewer ended jobs than this, and the throughput and latency are told, not plotted."""
MIN_HISTOGRAM = 3
"""Fewer recovered jobs than this, and their recovery times are told, not plotted."""
LISTED = 8
"""How many values a sentence lists before it says "and N more"."""


def rates_section(timeline: Timeline, spans: Sequence[JobSpan]) -> str:
    title = "Throughput and latency"
    ended = [s for s in spans if s.ended is not None]
    if not spans:
        return section("rates", title, '<p class="note">No job was submitted in this '
                                       "run.</p>")
    unfinished = len(spans) - len(ended)
    tail = f" {unfinished} of {len(spans)} submitted jobs had not ended when the run " \
           "stopped." if unfinished else ""
    if len(ended) < MIN_RATE_JOBS:
        told = ", ".join(f"{s.latency:.2f} s" for s in ended if s.latency is not None)
        what = (f"Only {len(ended)} job{'' if len(ended) == 1 else 's'} ended in this run, "
                "too few to plot throughput and latency over time"
                + (f"; submit → end: {told}." if told else "."))
        return section("rates", title, f'<p class="note">{esc(what + tail)}</p>')
    left = max(0.0, timeline.first_worker_start - 0.3)
    start = min(s.submitted for s in spans)
    end = max(max(s.ended for s in ended if s.ended is not None), start)
    width = bin_width(end - start)
    bins = rate_bins(spans, start, end, width)
    latencies = [s.latency for s in ended if s.latency is not None]
    span_s = max(end - start, width)
    body = chart(rates_svg(bins, spans, timeline.faults, (min(left, start), timeline.t_end
                                                           + 0.2)))
    body += cards([(f"{len(ended) / span_s:.2f}/s", "jobs ended per second, whole run"),
                   (f"{max(b.rate for b in bins):.2f}/s", f"busiest {width:g} s"),
                   (seconds(nearest_rank(latencies, 0.5)), "latency p50, whole run"),
                   (seconds(nearest_rank(latencies, 0.99)), "latency p99, whole run"),
                   (seconds(max(latencies)), "slowest job")])
    faults = _fault_words(timeline.faults)
    return section("rates", title, body + (f'<p class="note">{esc(tail.strip())}</p>'
                                           if tail else ""),
                   f"Jobs ended per second in bins of {width:g} s, and each job's latency "
                   "from its submit to its end, binned by when it ended (p99 is by nearest "
                   "rank: in a bin of fewer than 100 jobs it is the slowest one)." + faults)


def _fault_words(faults: Sequence[FaultMark]) -> str:
    if not faults:
        return " No fault fired."
    windows = sum(1 for m in faults if m.end is not None)
    kinds = Counter(m.kind for m in faults if m.end is None)
    instants = ", ".join(
        f"{count} {kind} ({'ticks along the top' if count > MAX_INSTANT_LINES else 'lines'})"
        for kind, count in kinds.items())
    return (f" Shaded: {_count(windows, 'fault window')}, each from the fault's start to its "
            "heal." + (f" Instant faults: {instants}." if kinds else ""))


def kill_recovery_part(run: RunFolder, spans: Sequence[JobSpan], t0: float) -> str:
    """The SIGKILL → job finished elsewhere part of the recovery section ("" if no job
    was in flight at a kill)."""
    found = kill_recoveries(run.history, spans, t0)
    if not found:
        return ""
    start = run.history.run_start
    raw_limit = start.get("recovery_limit_s") if start is not None else None
    limit = float(raw_limit) if raw_limit else None
    took = [r.took for r in found if r.took is not None]
    over = [t for t in took if limit is not None and t > limit]
    body = "<h3>SIGKILL → job finished elsewhere</h3>"
    if len(took) >= MIN_HISTOGRAM:
        body += chart(recovery_svg(histogram(took, top=limit or 0.0), limit, run.target))
    elif took:
        listed = ", ".join(f"{t:.2f} s" for t in took)
        body += (f'<p class="note">{esc(_count(len(took), "job"))} in flight at a SIGKILL '
                 f"finished on another worker {esc(listed)} later: too few for a histogram."
                 "</p>")
    parts = [(str(len(found)), "jobs in flight at a SIGKILL")]
    if took:
        parts += [(seconds(median(took)), "median SIGKILL → finished"),
                  (seconds(max(took)), "slowest")]
    if limit is not None:
        parts.append((f"{len(over)}", f"over the {limit:g} s limit"))
    body += cards(parts)
    stuck = [r for r in found if r.took is None]
    if stuck:
        rows = [[offset(r.kill_t), f"<code>{esc(r.worker)}</code>",
                 f"<code>{esc(r.job_id)}</code>", esc(r.state),
                 "—" if r.ended_t is None else offset(r.ended_t)] for r in stuck[:50]]
        more = f" (the first 50 of {len(stuck)})" if len(stuck) > 50 else ""
        body += (f"<h3>In flight at a SIGKILL, not completed after another attempt"
                 f"{esc(more)}</h3>"
                 + table(["kill", "worker", "job", "final state", "ended"], rows,
                         numeric=[0, 4], row_classes=["hl"] * len(rows)))
    return body


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"
