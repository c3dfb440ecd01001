"""Upload sources: deterministic bytes, written at once or grown by a writer thread.

An upload job streams a file that may still be growing. The harness plays the
program that writes it: ``source_bytes`` makes the content from the run's seed
(so a run replays byte for byte), and a ``SourceWriter`` appends it in steps
on a thread, then marks the source finished through the worker's API, the way
a recorder or a log shipper would, or stops without finishing (a stale
stream). The writer keeps the file open from start to end, so a fault that
deletes the file never makes it reappear under its name.

Every writer is stopped and joined by ``Environment.close`` on every exit
path; a stopped writer neither writes nor finishes.
"""

from __future__ import annotations

import hashlib
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

log = logging.getLogger(__name__)

FINISH_RETRY_S = 30.0  # how long the writer keeps asking the API to finish (e.g. Redis cut)


def source_bytes(seed: int, size: int) -> bytes:
    """``size`` bytes that depend only on ``seed``."""
    return random.Random(seed).randbytes(size)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def first_difference(expected: bytes, actual: bytes) -> int | None:
    """The first offset where ``actual`` departs from ``expected`` (None if equal)."""
    if expected == actual:
        return None
    for offset, (want, got) in enumerate(zip(expected, actual, strict=False)):
        if want != got:
            return offset
    return min(len(expected), len(actual))


@dataclass(frozen=True)
class Growth:
    """How a source grows: ``steps`` equal appends ``interval_s`` apart, the first one
    before the job is submitted; then the writer finishes it, or not."""

    steps: int
    interval_s: float
    finishes: bool = True


class SourceWriter:
    """Appends one source on a thread, then marks it finished (``finish()``)."""

    def __init__(self, path: Path, content: bytes, growth: Growth) -> None:
        self.path = path
        self.content = content
        self.growth = growth
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._file: BinaryIO | None = None
        size = len(content)
        self._cuts = [size * step // growth.steps for step in range(growth.steps + 1)]

    def write_first(self) -> None:
        """Create the file with the first step's bytes (before the job is submitted)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("wb")
        self._append(0)

    def start(self, finish: Callable[[], None]) -> None:
        """Append the other steps on a thread, then call ``finish`` (if the source finishes)."""
        self._thread = threading.Thread(target=self._run, args=(finish,), daemon=True,
                                        name=f"writer-{self.path.name}")
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._file is not None:
            self._file.close()

    @property
    def done(self) -> bool:
        return self._thread is not None and not self._thread.is_alive()

    def _append(self, step: int) -> None:
        assert self._file is not None
        self._file.write(self.content[self._cuts[step]:self._cuts[step + 1]])
        self._file.flush()

    def _run(self, finish: Callable[[], None]) -> None:
        for step in range(1, self.growth.steps):
            if self._stop.wait(self.growth.interval_s):
                return
            self._append(step)
        if not self.growth.finishes:
            log.info("writer of %s stops without finishing it (a stale stream)", self.path)
            return
        deadline = time.monotonic() + FINISH_RETRY_S
        while not self._stop.is_set():
            try:
                finish()
                return
            except Exception as exc:  # noqa: BLE001 - the API may be briefly unable (Redis cut)
                if time.monotonic() >= deadline:
                    log.error("writer of %s could not finish it: %s", self.path, exc)
                    return
                log.info("writer of %s: finishing failed (%s); retrying", self.path, exc)
                self._stop.wait(0.2)
