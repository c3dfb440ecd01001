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
