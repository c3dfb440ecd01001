"""A real ``redis-server`` child process that a run can SIGKILL and restart.

The server listens on 127.0.0.1 only, keeps everything in its own work
directory and never writes RDB snapshots (``save ""``), so what survives a
crash is decided by the append-only file alone:

* ``aof=False``: nothing survives ``kill9()`` (nor ``stop()``); a restarted
  server starts empty.
* ``aof=True``: ``appendonly yes`` with ``appendfsync everysec``. Redis hands
  each write to the kernel before it replies, so SIGKILLing the process loses
  at most writes whose AOF write Redis postponed (it may do so for up to two
  seconds while a background fsync is slow); the once-a-second fsync only
  matters when the machine itself goes down, which crashlab does not simulate.

``restart()`` starts the server again on the same port with the same
directory, so it replays the AOF and clients reconnect to the same URL.
"""

from __future__ import annotations

import logging
import shutil
import weakref
from pathlib import Path
from types import TracebackType
from typing import Any, cast

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from harness.errors import MissingBinaryError, SetupError
from harness.ports import LOOPBACK, on_free_port, port_open, wait_until
from harness.procs import ManagedProcess, ProcessRegistry

log = logging.getLogger(__name__)

BINARY = "redis-server"
HOW_TO_INSTALL = (
    "install Debian's redis-server package: apt-get install redis-server (or run scripts/setup.sh)"
)

# Attempts with a fresh port when an automatically chosen one was taken
# between picking it and redis-server binding it.


def _quoted(text: str) -> str:
    """A redis.conf string argument (double-quoted, backslash escapes)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class RedisServer:
    """One ``redis-server`` process with its config, data and log in ``workdir``."""

    def __init__(
        self,
        workdir: Path,
        *,
        port: int | None = None,
        aof: bool = False,
        registry: ProcessRegistry | None = None,
        startup_timeout: float = 15.0,
    ) -> None:
        self.workdir = workdir.resolve()
        self.aof = aof
        self.registry = registry
        self.startup_timeout = startup_timeout
        self._fixed_port = port is not None
        self._port = port
        self._proc: ManagedProcess | None = None
        self._clients: weakref.WeakSet[redis.Redis] = weakref.WeakSet()

    # -- addresses -----------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("redis-server has no port until start() has run")
        return self._port

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"

    @property
    def config_path(self) -> Path:
        return self.workdir / "redis.conf"

    @property
    def log_path(self) -> Path:
        return self.workdir / "redis.log"

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError("redis-server was never started")
        return self._proc.pid

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.is_running()

    def client(self, *, db: int = 0, socket_timeout: float = 2.0) -> redis.Redis:
        """A new client for this server (strings in and out, short timeouts).

        It keeps working across ``kill9()``/``restart()``: redis-py reconnects
        on the next command. ``stop()`` closes every client handed out.
        """
        client = redis.Redis(
            host=LOOPBACK,
            port=self.port,
            db=db,
            decode_responses=True,
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_timeout,
        )
        self._clients.add(client)
        return client

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> RedisServer:
        """Start the server and wait until it answers PING; returns ``self``."""
        if self.is_running():
            raise RuntimeError(f"redis-server is already running on port {self.port}")
        binary = shutil.which(BINARY)
        if binary is None:
            raise MissingBinaryError(BINARY, HOW_TO_INSTALL)
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self._port is not None:
            self._launch(binary, self._port)
            return self
        self._port = on_free_port(lambda port: self._launch(binary, port), "redis-server")
        return self

    def kill9(self) -> None:
        """SIGKILL the server, as a crash would; whatever is not in the AOF is gone."""
        if self._proc is None or not self._proc.is_running():
            log.debug("kill9: redis-server is not running")
            return
        pid = self._proc.pid
        code = self._proc.kill()
        log.info("redis-server (pid %d, port %d) SIGKILLed (exit %d)", pid, self.port, code)

    def restart(self) -> RedisServer:
        """Start again on the same port and directory (replaying the AOF if any).

        A server that is still running is stopped gracefully first.
        """
        if self._port is None:
            raise RuntimeError("restart() before start()")
        if self.is_running():
            self._stop_process()
        binary = shutil.which(BINARY)
        if binary is None:
            raise MissingBinaryError(BINARY, HOW_TO_INSTALL)
        self._launch(binary, self._port)
        return self

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM the server (SIGKILL after ``grace`` s) and close its clients."""
        for client in list(self._clients):
            client.close()
        self._stop_process(grace)

    def flush(self) -> None:
        """Delete every key in every database."""
        with self._admin_client() as client:
            client.flushall()

    def log_tail(self, lines: int = 40) -> str:
        return "" if self._proc is None else self._proc.log_tail(lines)

    def __enter__(self) -> RedisServer:
        if not self.is_running():
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- internals -----------------------------------------------------------

    def _config(self, port: int) -> str:
        lines = [
            "# generated by crashlab; overwritten on every start",
            f"bind {LOOPBACK}",
            f"port {port}",
            "protected-mode no",
            "daemonize no",
            f"dir {_quoted(str(self.workdir))}",
            f"logfile {_quoted(str(self.log_path))}",
            'save ""',
            f"appendonly {'yes' if self.aof else 'no'}",
        ]
        if self.aof:
            lines.append("appendfsync everysec")
        return "\n".join(lines) + "\n"

    def _launch(self, binary: str, port: int) -> None:
        if port_open(port):
            raise SetupError(f"cannot start redis-server: port {port} is already in use")
        self.config_path.write_text(self._config(port))
        # redis-server writes its own log to the same file once it has read
        # the config; config errors before that arrive on stdout/stderr.
        proc = ManagedProcess(
            f"redis-server:{port}",
            [binary, str(self.config_path)],
            log_path=self.log_path,
            cwd=self.workdir,
            registry=self.registry,
        )
        proc.start()
        self._proc = proc
        probe = redis.Redis(
            host=LOOPBACK, port=port, socket_timeout=1.0, socket_connect_timeout=0.5,
            retry=Retry(NoBackoff(), 0),  # wait_until does the polling
        )

        def ready() -> bool:
            try:
                # a sync client; redis-py 5.x types its replies as maybe-awaitable
                info = cast(dict[str, Any], probe.info("server"))
            except redis.RedisError:  # refused, or still loading the AOF
                return False
            # Only our own process counts, not some other server on the port.
            return bool(info.get("process_id") == proc.pid)

        try:
            wait_until(
                ready,
                timeout=self.startup_timeout,
                what=f"redis-server on port {port}",
                alive=proc.is_running,
            )
        except (TimeoutError, RuntimeError) as exc:
            proc.stop(grace=1.0)
            raise SetupError(f"{exc}\n--- {self.log_path} ---\n{proc.log_tail()}") from None
        except BaseException:  # Ctrl-C while waiting: leave nothing running
            proc.stop(grace=1.0)
            raise
        finally:
            probe.close()
        log.info(
            "redis-server ready on port %d (pid %d, aof=%s, dir %s)",
            port, proc.pid, self.aof, self.workdir,
        )

    def _stop_process(self, grace: float = 5.0) -> None:
        if self._proc is None:
            return
        was_running = self._proc.is_running()
        code = self._proc.stop(grace)
        if was_running:
            log.info("redis-server on port %s stopped (exit %s)", self._port, code)

    def _admin_client(self) -> redis.Redis:
        return redis.Redis(
            host=LOOPBACK, port=self.port, socket_timeout=5.0, socket_connect_timeout=2.0
        )
