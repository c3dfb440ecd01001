"""Fixtures for the service, runtime and cleanup tests: a process registry and pid checks."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from harness.procs import ProcessRegistry


def pid_gone(pid: int) -> bool:
    """Dead: no such process, or a zombie nobody has reaped yet."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.fixture
def proc_registry(tmp_path: Path) -> ProcessRegistry:
    return ProcessRegistry(tmp_path / "state" / "procs")


@pytest.fixture
def wait_gone() -> Callable[[int, float], bool]:
    """``wait_gone(pid, timeout)``: whether ``pid`` died within ``timeout`` seconds."""

    def wait(pid: int, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while not pid_gone(pid):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    return wait
