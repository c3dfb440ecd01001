"""The history file and the final state: written, read back, typed, and strict about the schema."""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
from pathlib import Path

import pytest

from harness.errors import CrashlabError
from harness.history import (
    FinalState,
    History,
    HistoryError,
    HistoryWriter,
    load_history,
    load_state,
    save_state,
)
from harness.target import JobSnapshot


def snapshot(job_id: str = "job-1") -> JobSnapshot:
    return JobSnapshot(
        job_id=job_id, state="COMPLETED", epoch=2, retry_count=1, max_retries=3, chunk_count=2,
        chunks_done=2, progress=1.0, error=None, transcript="alfa bravo",
        committed_chunks={0: {"text": "alfa", "epoch": 1, "worker": "w1"},
                          1: {"text": "bravo", "epoch": 2, "worker": "w2"}},
        state_sets=["COMPLETED"])


def test_recorded_entries_read_back_with_index_ts_kind_and_fields(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    with HistoryWriter(path) as writer:
        first = writer.record("run_start", scenario="s", seed=3, schedule=[], target="reference")
        writer.record("op", op="submit", job_id="job-1", expected_transcript="alfa",
                      media_seconds=0.5, chunk_seconds=0.5, expected_chunks=1)
        writer.record("run_end", reason="done")

    history = load_history(path)

    assert [entry.index for entry in history] == [0, 1, 2]
    assert [entry.kind for entry in history] == ["run_start", "op", "run_end"]
    assert history[0].ts == first.ts
    assert history[0].fields == {"scenario": "s", "seed": 3, "schedule": [],
                                 "target": "reference"}
    assert history[1].text("job_id") == "job-1"
    assert history[0].integer("seed") == 3
    assert history[2].optional_text("missing") is None
    assert history.submits[0].expected_chunks == 1
    assert history[0].ts <= history[1].ts <= history[2].ts


def test_each_line_is_flushed_before_the_writer_closes(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    with HistoryWriter(path) as writer:
        writer.record("run_end", reason="crash")
        lines = path.read_text(encoding="utf-8").splitlines()
        assert len(lines) == 1
        assert json.loads(lines[0])["reason"] == "crash"


def test_concurrent_writers_get_unique_consecutive_indices(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    with HistoryWriter(path) as writer:
        def hammer(thread: int) -> None:
            for i in range(200):
                writer.record("failpoint_hit", worker=f"w{thread}", point="p", hit=i, job=None,
                              chunk=None, pid=thread, action="pass")

        threads = [threading.Thread(target=hammer, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    history = load_history(path)
    assert sorted(entry.index for entry in history) == list(range(1600))
    assert [entry.index for entry in history] == list(range(1600))  # file order is index order


def test_reserved_field_names_are_refused(tmp_path: Path) -> None:
    with HistoryWriter(tmp_path / "history.jsonl") as writer, \
            pytest.raises(HistoryError, match="reserved"):
        writer.record("external_call", ts=1.0, seq=1)


def test_an_existing_history_is_not_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    with HistoryWriter(path) as writer:
        writer.record("run_end", reason="first")
    with pytest.raises(HistoryError, match="already exists"):
        HistoryWriter(path)
    assert isinstance(HistoryError("x"), CrashlabError)


def test_append_continues_the_indices(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    with HistoryWriter(path) as writer:
        writer.record("run_start", scenario="s", seed=1, schedule=[], target="t")
    with HistoryWriter(path, append=True) as writer:
        entry = writer.record("run_end", reason="done")
    assert entry.index == 1
    assert [e.index for e in load_history(path)] == [0, 1]


def test_recording_after_close_is_an_error(tmp_path: Path) -> None:
    writer = HistoryWriter(tmp_path / "history.jsonl")
    writer.close()
    with pytest.raises(HistoryError, match="closed"):
        writer.record("run_end", reason="late")


def test_paths_and_sets_are_written_as_json(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    with HistoryWriter(path) as writer:
        writer.record("process_start", name="w1", role="worker", pid=5, incarnation=1,
                      cwd=Path("/tmp/x"), tags={"b", "a"})
    entry = load_history(path)[0]
    assert entry.get("cwd") == "/tmp/x"
    assert entry.get("tags") == ["a", "b"]


def test_a_torn_last_line_is_dropped_with_a_warning(tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "history.jsonl"
    with HistoryWriter(path) as writer:
        writer.record("run_start", scenario="s", seed=1, schedule=[], target="t")
    with path.open("a", encoding="utf-8") as handle:
        handle.write('{"index": 1, "ts": 2.0, "ki')
    with caplog.at_level(logging.WARNING, logger="harness.history"):
        history = load_history(path)
    assert len(history) == 1
    assert "torn last line 2" in caplog.text


def test_a_malformed_line_in_the_middle_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    path.write_text('{"index": 0, "ts": 1.0, "kind": "op"}\nnot json\n'
                    '{"index": 2, "ts": 1.0, "kind": "run_end"}\n', encoding="utf-8")
    with pytest.raises(HistoryError, match=r"history.jsonl:2"):
        load_history(path)


def test_an_entry_without_kind_is_refused() -> None:
    with pytest.raises(HistoryError, match="index/ts/kind"):
        History.from_json([{"index": 0, "ts": 1.0}])


def test_sut_events_are_typed_and_grouped_by_job_in_seq_order() -> None:
    def event(index: int, job: str, seq: int, **extra: object) -> dict[str, object]:
        return {"index": index, "ts": 1.0, "kind": "sut_event", "stream_id": f"1-{index}",
                "event": "job_claimed", "job_id": job, "worker_id": "w1", "epoch": "1",
                "seq": seq, "ts_ms": 10 + index, "recovery": "0", "data": "{}", **extra}

    history = History.from_json([event(0, "a", 2), event(1, "b", 1),
                                 event(2, "a", 1, recovery="1", data='{"chunk": 3}')])

    assert [e.seq for e in history.events_by_job["a"]] == [1, 2]
    first = history.events_by_job["a"][0]
    assert (first.epoch, first.recovery, first.data_int("chunk")) == (1, True, 3)
    assert history.events_by_job["b"][0].recovery is False
    assert first.describe() == "seq 1 (job_claimed by worker w1 epoch 1)"


def test_a_malformed_sut_event_names_the_entry_and_field() -> None:
    history = History.from_json([{"index": 4, "ts": 1.0, "kind": "sut_event", "event": "x",
                                  "job_id": "a", "worker_id": "w", "epoch": "one", "seq": 1,
                                  "ts_ms": 1, "stream_id": "1-1"}])
    with pytest.raises(HistoryError, match=r"entry 4 \(sut_event\).*'epoch'"):
        _ = history.sut_events


def test_worker_kills_take_the_role_from_process_start() -> None:
    rows: list[dict[str, object]] = [
        {"kind": "process_start", "name": "w1", "role": "worker", "pid": 11, "incarnation": 1},
        {"kind": "process_start", "name": "api", "role": "api", "pid": 12, "incarnation": 1},
        {"kind": "process_signal", "name": "w1", "pid": 11, "signal": "SIGKILL"},
        {"kind": "process_signal", "name": "api", "pid": 12, "signal": "SIGKILL"},
        {"kind": "process_signal", "name": "w1", "pid": 11, "signal": "SIGSTOP"},
    ]
    history = History.from_json({**row, "index": i, "ts": 1.0} for i, row in enumerate(rows))

    assert [(kill.name, kill.pid) for kill in history.worker_kills] == [("w1", 11)]
    assert [sig.role for sig in history.signals] == ["worker", "api", "worker"]


def test_schedule_and_external_calls_are_typed() -> None:
    rows: list[dict[str, object]] = [
        {"kind": "run_start", "scenario": "s", "seed": 1, "target": "t",
         "schedule": [{"fault_id": "f1", "fault": "kill_worker", "params": {"chunk": 2}}]},
        {"kind": "external_call", "seq": 3, "idempotency_key": "k", "job_id": "a",
         "chunk_index": "2", "outcome": "new", "status_code": 200, "text": "alfa"},
    ]
    history = History.from_json({**row, "index": i, "ts": 1.0} for i, row in enumerate(rows))

    assert history.schedule[0].fault_id == "f1"
    assert history.schedule[0].params == {"chunk": 2}
    call = history.external_calls[0]
    assert (call.seq, call.job_id, call.chunk_index, call.outcome) == (3, "a", 2, "new")


def test_final_state_round_trips_with_integer_chunk_indices(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    written = save_state(path, [snapshot("job-1"), snapshot("job-2")],
                         expect={"expect_retry_count": 1})

    loaded = load_state(path)

    assert loaded.jobs["job-1"] == snapshot("job-1")
    indexed = dataclasses.replace(snapshot("job-3"), state="PROCESSING", queued=0,
                                  lease="w2|2", deadline_ms=1_700_000_000_000)
    save_state(path, [indexed])
    assert load_state(path).jobs["job-3"] == indexed
    save_state(path, [snapshot("job-1"), snapshot("job-2")], expect={"expect_retry_count": 1})
    assert loaded.jobs["job-2"].committed_chunks[1]["worker"] == "w2"
    assert dict(loaded.expect) == {"expect_retry_count": 1}
    assert loaded.to_json() == written.to_json()
    raw = json.loads(path.read_text(encoding="utf-8"))
    assert set(raw) == {"jobs", "expect"}
    assert not path.with_name("state.json.tmp").exists()


def test_a_malformed_snapshot_names_the_job(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"jobs": {"job-9": {"job_id": "job-9", "state": "QUEUED"}}}),
                    encoding="utf-8")
    with pytest.raises(HistoryError, match="job-9"):
        load_state(path)


def test_final_state_without_expect_has_empty_expectations() -> None:
    state = FinalState.from_json({"jobs": {}})
    assert dict(state.expect) == {}
    assert dict(state.jobs) == {}
