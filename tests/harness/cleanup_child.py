"""A stand-in harness for test_cleanup.py, run as its own process.

    python cleanup_child.py MODE STATE_DIR WORK_DIR

Under a ``Cleanup`` it makes a temporary directory in WORK_DIR, starts a real
redis-server and one worker (which starts a helper process of its own),
prints one JSON line with every pid and the directory, and then waits to be
signalled. On Ctrl-C or SIGTERM it prints which exception unwound it.

MODE ``no-pdeathsig`` disarms the parent-death signal, standing in for a
child that outlives its harness (a platform without PR_SET_PDEATHSIG, or a
fork that raced the harness's death); MODE ``normal`` changes nothing.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path

import harness.procs
from harness.cleanup import Cleanup
from harness.ports import wait_until
from harness.runtime.process import ProcessRuntime
from harness.services.redis_server import RedisServer

WORKER = """
import subprocess, sys, time
helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
print("helper", helper.pid, flush=True)
time.sleep(120)
"""


def main() -> int:
    mode, state_dir, work_dir = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    if mode == "no-pdeathsig":
        harness.procs._prctl = None
    try:
        with Cleanup(state_dir=state_dir) as cleanup:
            tmp = cleanup.temp_dir("child", parent=work_dir)
            redis = cleanup.enter(RedisServer(tmp / "redis", registry=cleanup.registry))
            runtime = ProcessRuntime(tmp / "run", cleanup.registry)
            cleanup.callback(lambda: runtime.stop_all(grace=2.0), "workers")
            handle = runtime.start_worker("worker-1", [sys.executable, "-c", WORKER], {})
            log = runtime.log_path(handle)
            wait_until(lambda: "helper" in log.read_text(), timeout=10, what="worker helper")
            match = re.search(r"helper (\d+)", log.read_text())
            assert match is not None
            report = {"harness": os.getpid(), "redis": redis.pid, "worker": runtime.pid(handle),
                      "helper": int(match.group(1)), "tmp": str(tmp)}
            print(json.dumps(report), flush=True)
            while True:
                time.sleep(0.05)
    except KeyboardInterrupt as exc:
        print(json.dumps({"unwound_by": type(exc).__name__}), flush=True)
        return 130


if __name__ == "__main__":
    sys.exit(main())
