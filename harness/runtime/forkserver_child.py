"""The fork server's own program: import the worker's modules once, then fork workers.

``python -m harness.runtime.forkserver_child --fd N --preload MODULE ...``
is started by ``harness.runtime.forkserver`` with one end of a
``SOCK_SEQPACKET`` socket pair as descriptor N. It imports the preload
modules (for the reference worker the ``openai`` SDK, ``redis`` and
pydantic: most of a cold start), says ``{"ready": pid}``, and then answers
one request per message, in order:

``{"op": "spawn", "module", "args", "env", "cwd"}`` with the worker's log file
    attached (``SCM_RIGHTS``): fork; the child becomes the worker (below);
    answer ``{"pid": pid}``.
``{"op": "reap", "pid"}``
    wait for that child and answer ``{"code": exit code}`` (negative: the
    killing signal, as ``subprocess`` reports it). Children are reaped only
    on request, so a pid the harness knows cannot be reused before the
    harness has stopped signalling it.

The forked child starts its own session (a signal to its process group
reaches everything it starts), arms ``PR_SET_PDEATHSIG`` so it dies with
this server (which dies with the harness), takes the log as stdout and
stderr and /dev/null as stdin, replaces its environment, changes to ``cwd``
and runs ``module`` as ``python -m module args`` would. It ends with
``os._exit``: interpreter teardown after a large import graph costs about
0.4 s of CPU and nothing of the worker's lives in this process's memory.

A preload module that cannot be imported is reported in the server's log
and skipped (the worker imports what it needs itself). Nothing beyond the
standard library is imported before the preload: the server must stay
single-threaded to fork safely, and it refuses to serve (exit 75) if a
preloaded module started a thread.
"""

from __future__ import annotations

import ctypes
import gc
import importlib
import json
import logging
import os
import runpy
import signal
import socket
import sys
import threading
import traceback
from typing import Any

EXIT_NOT_SERVING = 75  # preloading started threads: workers start cold
_PR_SET_PDEATHSIG = 1
_MAX_MESSAGE = 1 << 20


def main(argv: list[str]) -> int:
    fd = int(argv[argv.index("--fd") + 1])
    preload = [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == "--preload"]
    channel = socket.socket(fileno=fd)
    gc.disable()  # no collections here: they would leave holes in pages children share
    for module in preload:
        try:
            importlib.import_module(module)
        except Exception as exc:  # noqa: BLE001 - only an optimisation: the worker imports it
            print(f"fork server: cannot preload {module} ({exc!r}); workers will import it "
                  "themselves", file=sys.stderr, flush=True)
    if threading.active_count() > 1:
        print(f"fork server: preloading {preload} started threads "
              f"({[t.name for t in threading.enumerate()]}); forking would be unsafe",
              file=sys.stderr, flush=True)
        return EXIT_NOT_SERVING
    prctl = ctypes.CDLL("libc.so.6", use_errno=True).prctl
    # children's collections must not touch (and so copy) the pages of these objects
    gc.freeze()
    channel.send(json.dumps({"ready": os.getpid()}).encode())
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(channel, _MAX_MESSAGE, 4)
        except ConnectionResetError:
            return 0
        if not message:  # the harness closed its end: we are done
            return 0
        request = json.loads(message)
        answer: dict[str, Any]
        if request["op"] == "spawn":
            sys.stdout.flush()
            sys.stderr.flush()
            server = os.getpid()
            try:
                pid = os.fork()
            except OSError as exc:  # out of processes or memory: the harness starts it cold
                pid, answer = 0, {"error": f"fork failed: {exc}"}
            else:
                if pid == 0:
                    _become_worker(request, fds, channel, prctl, server)  # never returns
                answer = {"pid": pid}
            for extra in fds:
                os.close(extra)
            channel.send(json.dumps(answer).encode())
        elif request["op"] == "reap":
            try:
                _, status = os.waitpid(int(request["pid"]), 0)
                answer = {"code": os.waitstatus_to_exitcode(status)}
            except ChildProcessError:
                answer = {"code": None}
            channel.send(json.dumps(answer).encode())
        else:
            channel.send(json.dumps({"error": f"unknown op {request['op']!r}"}).encode())


def _become_worker(request: dict[str, Any], fds: list[int], channel: socket.socket,
                   prctl: Any, server: int) -> None:
    """In the forked child: turn into the worker, run it, and exit with its code."""
    code = 1
    try:
        gc.enable()
        os.setsid()
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != server:  # the server died before the signal was armed
            os._exit(1)
        channel.close()
        log_fd = fds[0]
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        for extra in fds:
            os.close(extra)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = [sys.argv[0], *request["args"]]
        try:
            runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as exc:
            code = _exit_code(exc.code)
    except BaseException:  # noqa: BLE001 - the worker's own crash: show it, exit 1
        traceback.print_exc()
    finally:
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)


def _exit_code(value: object) -> int:
    """What ``sys.exit(value)`` makes the exit status."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value & 0xFF
    print(value, file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
