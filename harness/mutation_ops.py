"""Mutation operators for Redis Lua scripts kept in Python strings (a cosmic-ray plugin).

cosmic-ray mutates Python syntax; a worker's most delicate recovery code is
often Lua run by Redis (the reference worker's fencing, commits and
takeovers in ``system_under_test/lua.py``), which cosmic-ray sees as plain
string literals. These two operators reach inside such a string:

    DeleteRedisCall      removes one ``redis.call(...)`` that stands as a
                         statement of its own (a write the script makes);
                         a call used as a value (``if redis.call(...) == 1``)
                         is left alone, as removing it would not parse
    FlipLuaComparison    replaces one comparison by its opposite
                         (``==``/``~=``, ``<``/``>=``, ``>``/``<=``)

Only string literals that hold ``redis.call`` are touched, and Lua string
literals and ``--`` comments inside them are skipped. The provider is
registered in the ``cosmic_ray.operator_providers`` entry points as
``crashlab``, so the operators are ``crashlab/DeleteRedisCall`` and
``crashlab/FlipLuaComparison``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import parso
from cosmic_ray.operators.operator import Example, Operator

Position = tuple[int, int]

_CALL = "redis.call("
_COMPARISON = re.compile(r"==|~=|<=|>=|<|>")
_STATEMENT_START = re.compile(r"(?:^|\s)(?:then|else|do)$|;$")  # what may precede a statement
_OPPOSITE = {"==": "~=", "~=": "==", "<": ">=", ">=": "<", ">": "<=", "<=": ">"}
_LUA_QUOTED = re.compile(r"'(?:[^'\\\n]|\\.)*'|\"(?:[^\"\\\n]|\\.)*\"|--[^\n]*")


def _is_script(node: Any) -> bool:
    return bool(node.type == "string" and _CALL in node.value)


def _code_only(text: str) -> str:
    """``text`` with Lua string literals and comments blanked (same length)."""
    return _LUA_QUOTED.sub(lambda m: " " * len(m.group()), text)


def _call_end(text: str, start: int) -> int | None:
    """The offset just past the ``)`` that closes the call opened at ``start``."""
    depth = 0
    for offset in range(start + len(_CALL) - 1, len(text)):
        if text[offset] == "(":
            depth += 1
        elif text[offset] == ")":
            depth -= 1
            if depth == 0:
                return offset + 1
    return None


def statement_calls(text: str) -> list[tuple[int, int]]:
    """(start, end) of every ``redis.call(...)`` in ``text`` that is a statement by itself."""
    code = _code_only(text)
    found = []
    for match in re.finditer(re.escape(_CALL), code):
        line_start = code.rfind("\n", 0, match.start()) + 1
        before = code[line_start:match.start()].strip()
        if before and not _STATEMENT_START.search(before):
            continue  # a value: assigned, compared, returned or an argument
        end = _call_end(code, match.start())
        if end is not None:
            found.append((match.start(), end))
    return found


def comparisons(text: str) -> list[tuple[int, int]]:
    """(start, end) of every comparison operator in the Lua code of ``text``."""
    return [(m.start(), m.end()) for m in _COMPARISON.finditer(_code_only(text))]


def _position(node: Any, offset: int) -> Position:
    """The (line, column) of character ``offset`` of ``node``'s value."""
    line, column = node.start_pos
    before = node.value[:offset]
    newlines = before.count("\n")
    if newlines == 0:
        return line, column + offset
    return line + newlines, len(before) - before.rfind("\n") - 1


def _replaced(node: Any, span: tuple[int, int], text: str) -> Any:
    value = node.value[:span[0]] + text + node.value[span[1]:]
    return parso.python.tree.String(value, node.start_pos, node.prefix)


class DeleteRedisCall(Operator):  # type: ignore[misc]
    """Remove one statement-level ``redis.call(...)`` from a Lua script."""

    def mutation_positions(self, node: Any) -> Iterator[tuple[Position, Position]]:
        if _is_script(node):
            for start, end in statement_calls(node.value):
                yield _position(node, start), _position(node, end)

    def mutate(self, node: Any, index: int) -> Any:
        return _replaced(node, statement_calls(node.value)[index], "")

    @classmethod
    def examples(cls) -> tuple[Example, ...]:
        return (Example('S = """\nredis.call(\'SET\', KEYS[1], 1)\nreturn 1\n"""',
                        'S = """\n\nreturn 1\n"""'),)


class FlipLuaComparison(Operator):  # type: ignore[misc]
    """Replace one comparison in a Lua script by its opposite."""

    def mutation_positions(self, node: Any) -> Iterator[tuple[Position, Position]]:
        if _is_script(node):
            for start, end in comparisons(node.value):
                yield _position(node, start), _position(node, end)

    def mutate(self, node: Any, index: int) -> Any:
        start, end = comparisons(node.value)[index]
        return _replaced(node, (start, end), _OPPOSITE[node.value[start:end]])

    @classmethod
    def examples(cls) -> tuple[Example, ...]:
        return (Example('S = """if redis.call(\'GET\', KEYS[1]) == \'x\' then end"""',
                        'S = """if redis.call(\'GET\', KEYS[1]) ~= \'x\' then end"""'),)


_OPERATORS = {op.__name__: op for op in (DeleteRedisCall, FlipLuaComparison)}


class LuaOperators:
    """cosmic-ray's operator provider for the two operators above."""

    def __iter__(self) -> Iterator[str]:
        return iter(_OPERATORS)

    def __getitem__(self, name: str) -> type[Operator]:
        return _OPERATORS[name]
