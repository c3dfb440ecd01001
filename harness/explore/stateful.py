"""Stateful chaos: Hypothesis drives the worker step by step and checks after every step.

``machine_for(session)`` returns a ``RuleBasedStateMachine`` whose rules are
what happens to a real deployment: submit a job, SIGKILL a worker (at once,
or when one reaches a given failpoint), start one,
sever Redis, heal it, corrupt a chunk file, and wait for quiescence. After
every step the invariants are checked on Redis itself (no history needed),
so a broken step is caught the moment it happens and Hypothesis shrinks the
sequence of steps that led there. Use it from pytest::

    from hypothesis import settings
    from hypothesis.stateful import run_state_machine_as_test
    from harness.explore.stateful import ChaosSession, machine_for

    def test_worker_survives_random_steps(tmp_path, crashlab_registry):
        with ChaosSession(tmp_path, crashlab_registry) as session:
            run_state_machine_as_test(machine_for(session), settings=settings(
                max_examples=5, stateful_step_count=10, deadline=None))

Invariants after every step: each job is in exactly one state index; its
``chunks_done`` equals its committed chunks and never exceeds its chunk
count; its event ``seq`` runs 1..n without gaps; every committed chunk holds
exactly the words of its part of the audio; a COMPLETED job's transcript is
exact. After the last step everything is healed and every job must settle
in COMPLETED (or FAILED with a reason its faults explain).
"""

from __future__ import annotations

import random
from pathlib import Path
from types import TracebackType

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from harness.audio import SEGMENT_SECONDS
from harness.environment import Environment, Worker, record_nothing
from harness.faults import FaultContext
from harness.packs_registry import load_target
from harness.procs import ProcessRegistry
from harness.runner import Session
from harness.target import Target, media_target

SETTINGS = {"lease_ttl_ms": "600", "heartbeat_ms": "120", "chunk_seconds": "1.0",
            "chunk_concurrency": "1", "poll_interval_ms": "20", "max_retries": "10"}
MEDIA_SECONDS = 3.0
WORKERS = 2
# where ``kill_worker`` may strike, and how long it waits for a worker to get there
KILL_POINTS = ("chunking.split", "chunk.before_request", "chunk.transcribed.before_commit",
               "chunk.committed", "recovery.verified")
PHASE_WAIT_S = 2.0


class ChaosSession:
    """Services for a stateful run, started once and reset for each example."""

    def __init__(self, root: Path, registry: ProcessRegistry,
                 target: Target | None = None) -> None:
        self.session = Session(root, target or load_target(), registry, dict(SETTINGS))

    def __enter__(self) -> ChaosSession:
        self.session.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.session.close()


def machine_for(chaos: ChaosSession) -> type[RuleBasedStateMachine]:
    session = chaos.session

    class ChaosMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            session.reset()
            self.env: Environment = session.env
            self.severed = False
            # the harness's own fault machinery: arming, waiting for a hit, killing
            self.faults = FaultContext(self.env, random.Random(0), record_nothing,
                                       phase_timeout=PHASE_WAIT_S)
            self.env.top_up(WORKERS)

        @rule(seed=st.integers(0, 10_000))
        @precondition(lambda self: len(self.env.jobs) < 3 and not self.severed)
        def submit(self, seed: int) -> None:
            self.env.submit(seed, MEDIA_SECONDS)

        @rule(which=st.integers(0, WORKERS - 1),
              at=st.none() | st.sampled_from(KILL_POINTS))
        def kill_worker(self, which: int, at: str | None) -> None:
            """SIGKILL a worker now, or the first one to reach failpoint ``at``."""
            live = sorted(self.env.live_workers(), key=lambda w: w.worker_id)
            if at is not None and self.env.jobs and not self.severed:
                self._kill_at_phase(at)
            elif live:
                self._kill(live[which % len(live)])

        def _kill(self, worker: Worker) -> None:
            self.faults.kill(worker)

        def _kill_at_phase(self, point: str) -> None:
            """Pause the first worker to reach ``point``, SIGKILL it there, let the rest go."""
            found = self.faults.wait_any_hit(point, "1*pause")
            if found is not None:
                self._kill(found[0])

        @rule()
        def restart_workers(self) -> None:
            self.env.top_up(WORKERS)

        @rule()
        @precondition(lambda self: not self.severed)
        def sever_redis(self) -> None:
            assert self.env.proxy is not None
            self.env.proxy.disable()
            self.severed = True

        @rule()
        @precondition(lambda self: self.severed)
        def heal_redis(self) -> None:
            assert self.env.proxy is not None
            self.env.proxy.enable()
            self.severed = False

        @rule(job=st.integers(0, 2), chunk=st.integers(0, 2))
        def corrupt_chunk(self, job: int, chunk: int) -> None:
            ids = list(self.env.jobs)
            if not ids:
                return
            target = media_target(self.env.target)
            path = target.chunk_file(self.env.wiring, ids[job % len(ids)], chunk)
            if path.is_file():
                path.write_bytes(path.read_bytes()[:44] + bytes(range(256)) * 16)

        @rule()
        @precondition(lambda self: not self.severed)
        def quiesce(self) -> None:
            self.env.top_up(WORKERS)
            assert self.env.wait_terminal(timeout=30), "jobs did not settle in 30 s"

        @invariant()
        def state_is_consistent(self) -> None:
            if self.severed or not self.env.jobs:
                return  # the harness reads the same Redis; nothing changed while it is cut
            words_per_chunk = round(float(SETTINGS["chunk_seconds"]) / SEGMENT_SECONDS)
            events: dict[str, list[int]] = {}
            for _, event in self.env.events():
                events.setdefault(event["job_id"], []).append(event["seq"])
            for job_id, submitted in self.env.jobs.items():
                snap = self.env.snapshot(job_id)
                assert len(snap.state_sets) == 1 and snap.state_sets[0] == snap.state, \
                    f"job {job_id} is {snap.state} but in state indexes {snap.state_sets}"
                assert snap.chunks_done == len(snap.committed_chunks), \
                    f"job {job_id}: chunks_done {snap.chunks_done} but " \
                    f"{len(snap.committed_chunks)} chunks committed"
                if snap.chunk_count is not None:
                    assert snap.chunks_done <= snap.chunk_count
                seqs = events.get(job_id, [])
                assert seqs == list(range(1, len(seqs) + 1)), f"job {job_id}: seq {seqs}"
                for index, chunk in snap.committed_chunks.items():
                    want = " ".join(submitted.words[index * words_per_chunk:
                                                    (index + 1) * words_per_chunk])
                    assert chunk["text"] == want, \
                        f"job {job_id} chunk {index} committed {chunk['text']!r}, " \
                        f"expected {want!r}"
                if snap.state == "COMPLETED":
                    assert snap.transcript == submitted.expected_transcript

        def teardown(self) -> None:
            if self.severed and self.env.proxy is not None:
                self.env.proxy.enable()
            self.env.top_up(WORKERS)
            settled = self.env.wait_terminal(timeout=40)
            final = {job_id: self.env.snapshot(job_id).state for job_id in self.env.jobs}
            session.runtime.stop_all(grace=1.0)
            assert settled, f"jobs did not settle after healing: {final}"
            assert all(state == "COMPLETED" for state in final.values()), \
                f"jobs not all COMPLETED after healing: {final}"

    return ChaosMachine
