"""The report of one run: a single self-contained HTML page rendered from its run folder.

Top to bottom: the verdict banner (with the first broken invariant's witness),
the explorer's shrunk counterexample when there is one, every checker's
verdict and witness, the timeline (a lane per worker incarnation, faults
shaded, failpoint hits, job progress; aggregated past ``reports.crowd``'s
thresholds), throughput and job latency over time (``reports.rates_page``),
recovery latency (crash to resumed progress, and SIGKILL to the job finished
elsewhere), external calls per chunk, fault coverage, the worker's code
coverage (after ``run --coverage``), the jobs' final state, how to reproduce
the run (seed, schedule, commands) and the tail of every process log.

``render_run`` returns the page; ``write_run_report`` saves it, by default as
``report.html`` inside the run folder. An explorer passes its counterexample
as a mapping (``counterexample=``) or leaves it in the run folder as
``counterexample.json``. Known keys are laid out: ``summary``, ``checker``,
``witness``, ``failing_checks`` (check results as in ``results.json``),
``schedule`` (a list of fault specs, or its one-line description) and
``replay``; any other key (``run_dir``, ``faults``, ``seed`` ...) is listed
with its value.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from harness.checkers.base import CheckResult, Verdict, tally_words
from harness.runfolder import REPORT_FILE as REPORT_FILE  # re-exported
from reports import charts, crowd
from reports.coverage_page import coverage_section, load_summary
from reports.html import (
    badge,
    banner,
    cards,
    chart,
    esc,
    key_values,
    offset,
    page,
    pre,
    seconds,
    section,
    table,
    toc,
)
from reports.jobtimes import JobSpan, attempts, job_spans
from reports.measures import ChunkCalls, calls_per_chunk, coverage, median, recoveries
from reports.rates_page import kill_recovery_part, rates_section
from reports.rundata import RunFolder, load_counterexample, load_run, log_tails
from reports.timeline import Timeline, build_timeline, key_events

TABLE_OPEN_ROWS = 20
"""Longer per-crash tables are folded into a ``<details>``."""
SECTIONS = (("checks", "Checkers"), ("timeline", "Timeline"),
            ("rates", "Throughput and latency"), ("recovery", "Recovery latency"),
            ("calls", "Calls per chunk"), ("coverage", "Fault coverage"), ("jobs", "Jobs"),
            ("reproduce", "Reproduce"), ("logs", "Logs"))


def render_run(run_dir: Path, *, counterexample: Mapping[str, Any] | None = None) -> str:
    """The HTML report of the run saved in ``run_dir``."""
    run = load_run(run_dir)
    if counterexample is None:
        counterexample = load_counterexample(run.path)
    t0 = run.started or 0.0
    timeline = build_timeline(run.history, t0)
    colors = charts.lane_colors([lane.name for lane in timeline.lanes])
    spans = job_spans(run.history, run.state, t0)
    scale = crowd.plan(timeline, spans,
                       attempts(run.history, spans, crowd.deaths(timeline.lanes), t0))
    jobs = {job: number for number, job in enumerate(timeline.jobs, start=1)}
    body = [_header(run), _banner(run)]
    entries = list(SECTIONS)
    worker_coverage = load_summary(run.path)
    if worker_coverage is not None:
        entries.insert(entries.index(("jobs", "Jobs")), ("worker-coverage", "Worker coverage"))
    if counterexample:
        entries.insert(0, ("counterexample", "Counterexample"))
    body.append(toc(entries))
    if counterexample:
        body.append(_counterexample(counterexample))
    if run.problems:
        items = "".join(f"<li>{esc(problem)}</li>" for problem in run.problems)
        body.append(f'<div class="problems"><strong>This run folder is incomplete.</strong>'
                    f"<ul>{items}</ul></div>")
    body += [_checks(run), _timeline(run, timeline, colors, t0, scale),
             rates_section(timeline, spans), _recovery(run, spans, t0, jobs), _calls(run, jobs),
             _coverage(run, t0)]
    if worker_coverage is not None:  # `crashlab run --coverage` left coverage.json
        body.append(coverage_section(worker_coverage))
    body += [_jobs(run, jobs), _reproduce(run), _logs(run, timeline, t0)]
    return page(f"crashlab · {run.scenario} · {_word(run)}", "\n".join(body))


def write_run_report(run_dir: Path, out: Path | None = None, *,
                     counterexample: Mapping[str, Any] | None = None) -> Path:
    """Render and save the report (default ``run_dir/report.html``); returns its path."""
    text = render_run(run_dir, counterexample=counterexample)
    target = out if out is not None else run_dir.resolve() / REPORT_FILE
    write_atomically(target, text)
    return target


def write_atomically(target: Path, text: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(target)


def _word(run: RunFolder) -> str:
    return "incomplete" if run.verdict is None else str(run.verdict)


def _header(run: RunFolder) -> str:
    meta = [run.name]
    if run.started is not None:
        meta.append(datetime.fromtimestamp(run.started).strftime("%Y-%m-%d %H:%M:%S"))
    if run.seed is not None:
        meta.append(f"seed {run.seed}")
    if run.target:
        meta.append(f"target {run.target}")
    if run.results is not None and run.results.duration_s is not None:
        meta.append(f"{run.results.duration_s:.1f} s")
    description = ""
    if run.schedule_doc is not None:
        description = str((run.schedule_doc.get("scenario") or {}).get("description") or "")
    return (f'<header class="top"><h1>{esc(run.scenario)}</h1>'
            f'<div class="meta">{esc(" · ".join(meta))}</div></header>'
            + (f'<p class="note">{esc(description)}</p>' if description else ""))


def _banner(run: RunFolder) -> str:
    results = run.results
    if results is None:
        return banner(None, "no checker judged this run",
                      run.problems[0] if run.problems else None)
    headline = (f"{tally_words(c.verdict for c in results.checks)} · faults fired "
                f"{results.faults_fired}/{results.faults_planned}")
    worst = next((c for c in results.checks if c.verdict is results.verdict
                  and c.verdict is not Verdict.VALID), None)
    detail = f"{worst.checker}: {worst.witness}" if worst is not None else \
        "every invariant held: no job lost, no chunk committed or billed twice"
    return banner(str(results.verdict), headline, detail)


def _counterexample(found: Mapping[str, Any]) -> str:
    parts = []
    for key in ("summary", "checker", "witness"):
        if found.get(key):
            parts.append(f"<p><strong>{esc(key)}:</strong> {esc(found[key])}</p>")
    failing = found.get("failing_checks")
    if isinstance(failing, Sequence) and not isinstance(failing, str) and failing:
        rows = [[f"<code>{esc(c.get('checker', '?'))}</code>", badge(str(c.get("verdict"))),
                 esc(c.get("witness", ""))] for c in failing if isinstance(c, Mapping)]
        parts.append(table(["checker", "verdict", "witness"], rows,
                           row_classes=["bad"] * len(rows)))
    schedule = found.get("schedule")
    if isinstance(schedule, str):
        parts.append("<h3>Shrunk schedule</h3>" + pre(schedule))
    elif isinstance(schedule, Sequence) and schedule:
        parts.append(f"<h3>Shrunk schedule ({len(schedule)} fault(s))</h3>")
        parts.append(table(["#", "fault", "parameters"], [
            [str(number), *_fault_cells(fault)] for number, fault in enumerate(schedule, 1)],
            numeric=[0]))
    if found.get("replay"):
        parts.append("<h3>Replay</h3>" + pre(str(found["replay"]), "cmd"))
    known = {"summary", "checker", "witness", "failing_checks", "schedule", "replay"}
    others = [(str(k), f"<code>{esc(v if isinstance(v, str) else json.dumps(v, default=str))}"
                       "</code>") for k, v in found.items() if k not in known]
    if others:
        parts.append(key_values(others))
    return section("counterexample", "Shrunk counterexample",
                   f'<div class="counterexample">{"".join(parts)}</div>',
                   "The smallest schedule the explorer found that still breaks an invariant.")


def _fault_cells(fault: object) -> list[str]:
    """A planned fault as (kind, parameters) cells: a scenario-file spec, a history
    ``{fault_id, fault, params}`` entry, or any other value as text."""
    if not isinstance(fault, Mapping):
        return [f"<code>{esc(fault)}</code>", ""]
    params = fault.get("params", fault)
    kind = fault.get("kind") or fault.get("fault") or params.get("kind", "?")
    rest = ", ".join(f"{key}={value}" for key, value in params.items()
                     if key not in ("kind", "fault_id"))
    return [f"<code>{esc(kind)}</code>", esc(rest)]


def _checks(run: RunFolder) -> str:
    if run.results is None or not run.results.checks:
        return section("checks", "Checkers", '<p class="note">No checker results were saved; '
                       f"<code>crashlab analyze {esc(run.path)}</code> re-checks the history."
                       "</p>")
    rows, classes = [], []
    for check in run.results.checks:
        rows.append([f"<code>{esc(check.checker)}</code>", badge(str(check.verdict)),
                     _witness(check)])
        classes.append({Verdict.INVALID: "bad", Verdict.UNKNOWN: "hl",
                        Verdict.NOT_APPLICABLE: "na"}.get(check.verdict, ""))
    return section("checks", "Checkers", table(["checker", "verdict", "witness"], rows,
                                               row_classes=classes),
                   "Each invariant, decided from the recorded history and the final state.")


def _witness(check: CheckResult) -> str:
    text = esc(check.witness)
    extra = [d for d in check.details if d.split(": ", 1)[-1] != check.witness]
    if not extra:
        return text
    items = "".join(f"<li>{esc(d)}</li>" for d in extra)
    return f"{text}<details><summary>{len(extra)} more</summary><ul>{items}</ul></details>"


def _timeline(run: RunFolder, timeline: Timeline, colors: Mapping[str, str], t0: float,
              scale: crowd.Scale) -> str:
    if not timeline.lanes and not timeline.progress:
        return section("timeline", "Timeline", '<p class="note">No worker was started in '
                       "this run.</p>")
    routine = scale.counts is None
    events = key_events(run.history, t0, routine=routine)
    rows = [[offset(t), f"<code>{esc(who)}</code>", esc(what)] for t, who, what in events]
    left_out = "" if routine else (f"; each of the {len(timeline.jobs)} jobs' submit, claim "
                                   "and completion left out")
    if scale.slots is None:
        lanes = "Lanes: " + ", ".join(f"{lane.name} ({lane.end_reason})"
                                      for lane in timeline.lanes)
    else:
        lanes = f"{len(timeline.lanes)} worker incarnations in {len(scale.slots)} rows: " + \
            ", ".join(f"{slot.name} started {len(slot.lanes)} times, {slot.killed} SIGKILLed"
                      for slot in scale.slots)
    body = (chart(charts.timeline_svg(timeline, colors, scale))
            + f'<p class="note">{esc(lanes)}.</p>'
            + f"<details><summary>Key events ({len(rows)}{esc(left_out)})</summary>"
            + table(["time", "who", "what"], rows, numeric=[0]) + "</details>")
    return section("timeline", "Timeline", body, _timeline_note(scale))


def _timeline_note(scale: crowd.Scale) -> str:
    if not scale.aggregated:
        return ("One lane per worker incarnation; the nemesis lane and the shading show "
                "each fault; below, each job's committed chunks (dots in the colour of the "
                "worker that committed them).")
    words = ["One row per worker slot: each incarnation where it lived, replaced after each "
             "SIGKILL (X)" if scale.slots is not None else "One lane per worker incarnation"]
    if scale.busy is not None:
        words.append("solid while it ran a job, pale while idle")
    words.append("one nemesis row per fault kind, windows shaded" if scale.fault_kinds
                 is not None else "the nemesis lane and the shading show each fault")
    if scale.counts is not None:
        words.append("below, how many jobs were queued, running, or waiting after their "
                     "worker was killed (mean over each bin), and how many had ended")
    return "; ".join(words) + "."


def _recovery(run: RunFolder, spans: Sequence[JobSpan], t0: float,
              jobs: Mapping[str, int]) -> str:
    # crash → progress needs the worker's own events; without them (rq, arq) only the
    # SIGKILL → finished part can say anything
    found = recoveries(run.history, t0) if run.history.sut_events else ()
    killed = kill_recovery_part(run, spans, t0)
    if not found and not killed:
        crashes = [s for s in run.history.signals
                   if s.role == "worker" and s.signal in ("SIGKILL", "SIGSTOP")]
        which = ", ".join(f"{s.signal} {s.name}" for s in crashes)
        note = "No worker was killed or paused in this run." if not crashes else (
            f"{len(crashes)} worker crash(es) ({which}), but no crashed worker held a job at "
            "the time: nothing had to recover." if run.history.sut_events else
            f"{len(crashes)} worker crash(es) ({which}); this worker writes no events of its "
            "own, so recovery is measured from SIGKILLs through the effects ledger, and no "
            "job was in flight at one.")
        return section("recovery", "Recovery latency", f'<p class="note">{esc(note)}</p>')
    body = ""
    if found:
        rows = []
        for rec in found:
            rows.append([offset(rec.crash_t), esc(rec.cause), f"<code>{esc(rec.worker)}</code>",
                         f"#{jobs.get(rec.job_id, '?')} <code>{esc(rec.job_id)}</code>",
                         seconds(rec.takeover_latency), seconds(rec.latency),
                         esc(f"{rec.resumed_event} by {rec.resumed_by}" if rec.resumed_by
                             else "never resumed")])
        values = [rec.latency for rec in found if rec.latency is not None]
        if values:
            body += "<h3>Crash → progress resumed</h3>"
            body += chart(charts.latency_svg([("this run", values)],
                                             "seconds from crash to resumed progress"))
            body += cards([(seconds(median(values)), "median crash → resumed progress"),
                           (seconds(max(values)), "slowest"),
                           (str(len(found)), "crashes")])
        crash_table = table(["crash", "signal", "worker", "job", "taken over after",
                             "progress resumed after", "resumed with"], rows,
                            numeric=[0, 4, 5])
        body += crash_table if len(rows) <= TABLE_OPEN_ROWS else (
            f"<details><summary>Every crash ({len(rows)})</summary>{crash_table}</details>")
    body += killed
    return section("recovery", "Recovery latency", body,
                   "From each SIGKILL (or SIGSTOP) of a worker to the first chunk the job's "
                   "next owner committed (or its completion, when no chunk was left), and "
                   "from each SIGKILL to the end of every job the killed worker had in flight, "
                   "as the checker recovery_bounded measures it.")


def _calls(run: RunFolder, jobs: Mapping[str, int]) -> str:
    chunks = calls_per_chunk(run.history)
    if not chunks:
        return section("calls", "Calls per chunk",
                       '<p class="note">The transcription service logged no call.</p>')
    outcomes: dict[str, int] = {}
    for chunk in chunks:
        for outcome, count in chunk.counts.items():
            outcomes[outcome] = outcomes.get(outcome, 0) + count
    rows, classes = [], []
    for chunk in chunks:
        if not chunk.repeated:
            continue
        rows.append([f"#{jobs.get(chunk.job_id or '', '?')} <code>{esc(chunk.job_id)}</code>",
                     esc(chunk.chunk), esc(" → ".join(chunk.outcomes)), esc(_meaning(chunk))])
        classes.append("bad" if chunk.billed_twice else "hl" if "repeat" in chunk.outcomes
                       else "")
    body = chart(charts.calls_svg(chunks, jobs))
    body += cards([(str(sum(outcomes.values())), "calls")]
                  + [(str(count), outcome) for outcome, count in sorted(outcomes.items())])
    if rows:
        repeated = table(["job", "chunk", "calls in order", "meaning"], rows, numeric=[1],
                         row_classes=classes)
        body += "<h3>Chunks called more than once</h3>" + (
            repeated if len(rows) <= crowd.MAX_JOBS else
            f"<details><summary>Every one ({len(rows)})</summary>{repeated}</details>")
    else:
        body += '<p class="note">Every chunk was called exactly once.</p>'
    return section("calls", "Calls per chunk", body,
                   "Every call the transcription service logged: new = billable work, repeat "
                   "= sent again and answered from its idempotency cache, status = a recovery "
                   "asking whether the work was done, fault = injected error. Repeats are "
                   "highlighted; a chunk billed twice is red.")


def _meaning(chunk: ChunkCalls) -> str:
    """What a chunk's several calls mean, in words."""
    counts = chunk.counts
    words = []
    if chunk.billed_twice:
        words.append(f"billed {counts['new']} times")
    if counts["repeat"]:
        words.append("sent again, answered from the idempotency cache (not billed)")
    if counts["status"]:
        words.append("status query before deciding to redo it (not billed)")
    if counts["fault"]:
        words.append("injected error, then retried")
    if counts["bad_request"]:
        words.append("rejected as a bad request")
    return "; ".join(words) or "called again"


def _coverage(run: RunFolder, t0: float) -> str:
    rows_data = coverage(run.history, t0)
    fired = sum(1 for row in rows_data if row.fired_t is not None)
    rows, classes = [], []
    for row in rows_data:
        rows.append([f"<code>{esc(row.fault_id)}</code>", f"<code>{esc(row.kind)}</code>",
                     esc(row.params), esc(row.status), offset(row.fired_t),
                     offset(row.healed_t) if row.skipped is None else esc(row.skipped)])
        classes.append("" if row.fired_t is not None else "hl")
    body = cards([(str(len(rows_data)), "planned"), (f"{fired}", "fired")])
    headers = ["fault", "kind", "parameters", "status", "fired", "healed"]
    if rows and len(rows) <= crowd.MAX_FAULT_LABELS * 5:
        body += table(headers, rows, numeric=[4], row_classes=classes)
    elif rows:  # a soak's repeats: the faults that did not fire stay in sight
        missed = [row for row, css in zip(rows, classes, strict=True) if css]
        if missed:
            body += "<h3>Did not fire</h3>" + table(headers, missed, numeric=[4],
                                                     row_classes=["hl"] * len(missed))
        body += (f"<details><summary>Every planned fault ({len(rows)})</summary>"
                 + table(headers, rows, numeric=[4], row_classes=classes) + "</details>")
    else:
        body += '<p class="note">The schedule has no fault: this is a baseline run.</p>'
    return section("coverage", "Fault coverage", body,
                   "A planned fault that never fired makes the run unknown, never valid.")


def _jobs(run: RunFolder, jobs: Mapping[str, int]) -> str:
    if run.state is None:
        return section("jobs", "Jobs", '<p class="note">No final state was saved.</p>')
    expected = run.history.submits_by_job
    rows, classes = [], []
    for job_id, snap in sorted(run.state.jobs.items(), key=lambda kv: jobs.get(kv[0], 0)):
        submit = expected.get(job_id)
        exact = "—"
        if submit is not None and submit.expected_transcript is not None \
                and snap.transcript is not None:
            exact = "yes" if snap.transcript == submit.expected_transcript else "NO"
        rows.append([f"#{jobs.get(job_id, '?')} <code>{esc(job_id)}</code>", esc(snap.state),
                     f"{snap.retry_count}/{snap.max_retries}",
                     f"{snap.chunks_done}/{'?' if snap.chunk_count is None else snap.chunk_count}",
                     str(snap.epoch), esc(exact), esc(snap.error or "")])
        classes.append("bad" if exact == "NO" else "")
    every = table(["job", "final state", "retries", "chunks", "epoch", "transcript exact",
                   "error"], rows, numeric=[2, 3, 4], row_classes=classes)
    if len(rows) <= crowd.MAX_JOBS:
        return section("jobs", "Jobs", every)
    states = Counter(snap.state for snap in run.state.jobs.values())
    body = cards([(str(count), state) for state, count in states.most_common()])
    wrong = classes.count("bad")
    if wrong:
        body += f'<p class="note">{wrong} transcript(s) differ from the expected one.</p>'
    return section("jobs", "Jobs", body + f"<details><summary>Every job ({len(rows)})"
                                          f"</summary>{every}</details>")


def _reproduce(run: RunFolder) -> str:
    items = [("scenario", f"<code>{esc(run.scenario)}</code>"),
             ("seed", f"<code>{esc(run.seed)}</code>"),
             ("target", esc(run.target or "—")), ("run folder", f"<code>{esc(run.path)}</code>")]
    commands = "\n".join(run.replay_commands)
    body = key_values(items)
    body += "<h3>Replay command</h3>" + pre(commands or "(no seed recorded)", "cmd")
    body += ('<p class="note">The first command replays this run folder; <code>crashlab run'
             "</code> with the same seed draws the same schedule (for a scenario from a file, "
             "pass the file instead of the name).</p>")
    schedule = run.schedule_doc.get("scenario") if run.schedule_doc else None
    if schedule is not None:
        body += "<h3>Schedule</h3>" + pre(yaml.safe_dump(schedule, sort_keys=False,
                                                         default_flow_style=None, width=100))
    elif run.history.schedule:
        body += "<h3>Schedule</h3>" + pre(yaml.safe_dump(
            [f.to_json() for f in run.history.schedule], sort_keys=False))
    return section("reproduce", "Reproduce", body)


def _logs(run: RunFolder, timeline: Timeline, t0: float) -> str:
    workers = [lane.name for lane in timeline.lanes]
    tails = log_tails(run.path, workers, t0=t0)
    if not tails:
        return section("logs", "Logs", '<p class="note">No process log was saved.</p>')
    parts = []
    for tail in tails:
        worker = Path(tail.name).stem in workers
        shown = f"last {len(tail.lines)} of {tail.total_lines} lines" if tail.cut else \
            f"{tail.total_lines} lines"
        parts.append(f"<details{' open' if worker else ''}><summary><code>{esc(tail.name)}"
                     f"</code> <span class=\"note\">({esc(shown)})</span></summary>"
                     + pre("\n".join(tail.lines) or "(empty)", "log") + "</details>")
    return section("logs", "Logs", "".join(parts),
                   "The tail of each process log; worker and API records are stamped in "
                   "seconds since the run started, like the timeline.")
