"""A tiny worker for the failpoint helper's tests: serves the control channel,
then hits points in itself and in a forked child, as RQ's work horse would.

argv: MODE (``fork`` or ``async``) and a file to append one line per point passed.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

from harness.failpoint import afailpoint, failpoint, serve

POINTS = {"job.start": "the job began", "job.effect": "the effect is about to be applied"}


def passed(log: str, what: str) -> None:
    with open(log, "a") as handle:
        handle.write(f"{what} {os.getpid()}\n")


def main() -> None:
    mode, log = sys.argv[1], sys.argv[2]
    serve(POINTS)
    passed(log, "ready")
    if mode == "fork":
        for job in ("a", "b"):
            child = os.fork()
            if child == 0:
                failpoint("job.start", job=job)
                passed(log, f"start-{job}")
                failpoint("job.effect", job=job)
                passed(log, f"effect-{job}")
                os._exit(0)
            _, status = os.waitpid(child, 0)
            passed(log, f"child-{job}-exit-{os.waitstatus_to_exitcode(status)}")
    else:
        async def job(name: str) -> None:
            await afailpoint("job.start", job=name)
            passed(log, f"start-{name}")

        async def both() -> None:
            await asyncio.gather(job("a"), job("b"))

        asyncio.run(both())
    passed(log, "done")
    time.sleep(60)  # stays up (its control channel too) until the test ends it


if __name__ == "__main__":
    main()
