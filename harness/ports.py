"""Loopback ports and readiness waits for the servers the harness starts.

Every server crashlab starts listens on 127.0.0.1 only; nothing here ever
connects to another address.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable

from harness.errors import SetupError

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def on_free_port(launch: Callable[[int], None], what: str, attempts: int = 3) -> int:
    """Run ``launch(port)`` on a free loopback port; returns the port it took.

    A ``SetupError`` from ``launch`` is retried on another port (something may
    take the port between picking it and binding it), up to ``attempts`` times.
    """
    for attempt in range(1, attempts + 1):
        port = free_port()
        try:
            launch(port)
        except SetupError:
            if attempt == attempts:
                raise
            log.info("%s could not use port %d; trying another one", what, port)
            continue
        return port
    raise AssertionError("unreachable")


def port_open(port: int, host: str = LOOPBACK) -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def wait_until(
    predicate: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    interval: float = 0.02,
    alive: Callable[[], bool] | None = None,
) -> None:
    """Poll ``predicate`` until it is true.

    Raises ``TimeoutError`` naming ``what`` when ``timeout`` seconds pass, or
    ``RuntimeError`` at once when ``alive`` says the thing being waited on died.
    """
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return
        if alive is not None and not alive():
            raise RuntimeError(f"{what}: the process exited before it was ready")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not ready after {timeout:.1f}s")
        time.sleep(interval)
