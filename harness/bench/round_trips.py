"""Figure 5's round trips: the Redis commands one worker sends, counted with MONITOR.

``Monitor`` opens its own connection to the data Redis, sends ``MONITOR`` and
keeps every command line Redis echoes while it runs: the time, the client's
address and the command. Commands a Lua script runs show as coming from
``lua`` and are left out: a script is one round trip, whatever it does. A
worker's commands are those from the addresses of its own connections to
Redis (``worker_addresses``, read from the live process), so the harness's
own polling and the API are not counted.

``per_chunk`` finds the commands sent per chunk from two runs of the same
jobs, one with twice the chunks of the other: a command (an ``EVALSHA`` by
its script) whose count grows by a whole number k for each chunk more, and
was k per chunk already, is sent k times per chunk. The rest come once per
job (claim, plan, completion), once per start (the scripts loaded), or
with the clock (lease renewals by the heartbeat, the janitor's scans, polls
of an empty queue). MONITOR slows Redis down, so runs it watches are never
the timed ones.
"""

from __future__ import annotations

import re
import socket
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any

import psutil

# +1700000000.123456 [0 127.0.0.1:54321] "EVALSHA" "3f..." "3" ...
_LINE = re.compile(rb'^\+\d+\.\d+ \[\d+ ([^\]]+)\] "([^"]*)"(?: "([^"]*)")?')


@dataclass(frozen=True)
class Command:
    client: str  # ip:port, or "lua" inside a script
    name: str  # upper case; an EVALSHA is named by its script: "EVALSHA 3f2a..."


class Monitor:
    """Every command the data Redis runs while it watches (a thread reads MONITOR)."""

    def __init__(self, host: str, port: int) -> None:
        self._sock = socket.create_connection((host, port), timeout=5)
        self._sock.sendall(b"MONITOR\r\n")
        self._file = self._sock.makefile("rb")
        if self._file.readline().strip() != b"+OK":
            raise OSError("Redis refused MONITOR")
        self._sock.settimeout(None)
        self.commands: list[Command] = []
        self._thread = threading.Thread(target=self._read, name="crashlab-monitor", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for line in self._file:
                found = _LINE.match(line)
                if found is None:
                    continue
                client, name, first = (found.group(i) for i in (1, 2, 3))
                label = name.decode().upper()
                if label == "EVALSHA" and first:
                    label += " " + first.decode()[:12]
                self.commands.append(Command(client.decode(), label))
        except (OSError, ValueError):
            return  # closed by stop()

    def stop(self) -> list[Command]:
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
        self._thread.join(timeout=5)
        return list(self.commands)


def worker_addresses(pid: int, redis_port: int) -> set[str]:
    """The ``ip:port`` of each connection process ``pid`` holds to ``redis_port``."""
    proc = psutil.Process(pid)
    return {f"{c.laddr.ip}:{c.laddr.port}" for c in proc.net_connections(kind="tcp")
            if c.raddr and c.raddr.port == redis_port}


def tally(commands: list[Command], clients: set[str]) -> Counter[str]:
    """How many of each command came from ``clients``."""
    return Counter(c.name for c in commands if c.client in clients)


def per_chunk(small: Counter[str], large: Counter[str], *, chunks: tuple[int, int],
              ) -> dict[str, int]:
    """The commands sent a whole number of times per chunk: two runs of the same jobs,
    ``chunks`` in all in the small and in the large one; a command's count grows by k
    for each chunk more, and was k per chunk in the small run too (within two, or a
    tenth). What follows the clock (a heartbeat) or comes once per job or per start
    does not grow that way."""
    fewer, more = chunks
    found: dict[str, int] = {}
    for name in set(small) | set(large):
        slope = (large[name] - small[name]) / (more - fewer)
        k = round(slope)
        if k >= 1 and abs(slope - k) < 0.15 and \
                abs(small[name] - k * fewer) <= max(2.0, 0.1 * k * fewer):
            found[name] = k
    return dict(sorted(found.items()))


def summary(small: Counter[str], large: Counter[str], *, chunks: tuple[int, int],
            jobs: int) -> dict[str, Any]:
    """One worker's commands in the two runs: per chunk, and the rest per job of the
    large run (claims, plans, completions, and what the clock and the start send)."""
    each = per_chunk(small, large, chunks=chunks)
    rest = sum(large.values()) - sum(each.values()) * chunks[1]
    return {"per_chunk": sum(each.values()), "per_chunk_commands": each,
            "rest_per_job": round(rest / jobs, 2) if jobs else 0.0,
            "total": sum(large.values()), "commands": dict(sorted(large.items()))}
