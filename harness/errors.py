"""The harness's exception tree.

    CrashlabError                 root of every error the harness raises on purpose
    +-- SetupError                a binary, port or service the run needs is not there (exit 3)
    |   +-- MissingBinaryError    names the binary and how to install it
    +-- ScenarioError             a scenario file is malformed (names the file, field and fix)
    +-- InconclusiveError         the run could not decide (a planned fault never fired; exit 2)
    +-- DebugError                ``crashlab debug`` cannot follow a break point or command

A fault the harness injected and then observed is data in the history, never
one of these.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """What every crashlab command exits with, defined once."""

    OK = 0
    """valid: every checker passed (or nothing was asked to fail)"""
    VIOLATION = 1
    """invalid: a checker found an invariant broken (or a mutant survived)"""
    INCONCLUSIVE = 2
    """unknown: the run could not decide (a planned fault never fired, jobs still running)"""
    SETUP = 3
    """bad input or a missing part: a scenario file, a target, a binary, a port, Docker"""


EXIT_OK, EXIT_VIOLATION, EXIT_INCONCLUSIVE, EXIT_SETUP = (
    int(ExitCode.OK), int(ExitCode.VIOLATION), int(ExitCode.INCONCLUSIVE), int(ExitCode.SETUP))


class CrashlabError(Exception):
    """Root of every error crashlab raises on purpose."""


class SetupError(CrashlabError):
    """Something the run needs (binary, port, service) is not available."""


class MissingBinaryError(SetupError):
    """A required executable is not installed."""

    def __init__(self, binary: str, how_to_install: str) -> None:
        self.binary = binary
        self.how_to_install = how_to_install
        super().__init__(f"required binary {binary!r} was not found on PATH; {how_to_install}")


class ScenarioError(CrashlabError):
    """A scenario file is malformed."""


class InconclusiveError(CrashlabError):
    """The run cannot decide: something planned did not happen."""


class DebugError(CrashlabError):
    """A break point or debugger command names something the session cannot do."""
