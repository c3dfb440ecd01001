"""A billable external service for the packs' example apps, run as a real child process.

The example jobs of the ``rq`` and ``arq`` packs each make one small billable
HTTP call here (``POST /charge`` with the job's id as the idempotency key),
the kind of side effect a real job has: a payment, an e-mail, an API call
someone pays for. Every call is appended to a JSON-lines call log before it
is answered; that log is the independent record of what was billed, which
the effects checkers compare with what the jobs say they did.

    POST /charge   {"job": ID, "key": KEY, "attempt_pid": PID}  -> {"charge": N, "duplicate": bool}
    GET  /calls    every call so far
    POST /latency  {"median_ms": M, "p99_ms": P, "seed": S}: answer each charge after a
                   latency drawn from ``harness.services.latency.LatencyModel`` (the
                   charge is made and logged at once, billed even if the client leaves)
    POST /reset    forget every call, key and latency (between runs of a session)
    GET  /health

With ``--ignore-keys`` the service bills a repeated key again, as services
without idempotency support do; by default a repeated key is answered with
the first charge and logged as a duplicate.

Run as ``python -m harness.services.billing --port P --call-log FILE``;
``BillingService`` starts, reads and stops it.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from harness.errors import SetupError
from harness.ports import LOOPBACK, free_port, wait_until
from harness.procs import ManagedProcess, ProcessRegistry
from harness.services.latency import LatencyModel

_START_TIMEOUT = 20.0


class BillingService:
    """The billing service on a free loopback port; files go to ``workdir``."""

    def __init__(self, workdir: Path, registry: ProcessRegistry | None = None, *,
                 honour_keys: bool = True) -> None:
        self.workdir = workdir
        self.registry = registry
        self.honour_keys = honour_keys
        self.call_log_path = workdir / "billing-calls.jsonl"
        self.log_path = workdir / "billing.log"
        self._proc: ManagedProcess | None = None
        self._port: int | None = None

    def start(self) -> BillingService:
        if self._proc is not None and self._proc.is_running():
            return self
        self.workdir.mkdir(parents=True, exist_ok=True)
        port = free_port()
        argv = [sys.executable, "-m", "harness.services.billing", "--host", LOOPBACK,
                "--port", str(port), "--call-log", str(self.call_log_path)]
        if not self.honour_keys:
            argv.append("--ignore-keys")
        proc = ManagedProcess("billing", argv, log_path=self.log_path,
                              registry=self.registry).start()
        self._proc, self._port = proc, port
        try:
            wait_until(self._healthy, timeout=_START_TIMEOUT, alive=proc.is_running,
                       what=f"billing service on port {port}")
        except (RuntimeError, TimeoutError) as exc:
            proc.kill()
            self._proc = self._port = None
            raise SetupError(f"the billing service did not start: {exc}\n"
                             f"{proc.log_tail()}") from exc
        return self

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.stop()
            self._proc = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def url(self) -> str:
        if self._port is None:
            raise RuntimeError("the billing service is not running")
        return f"http://{LOOPBACK}:{self._port}"

    def _healthy(self) -> bool:
        try:
            return httpx.get(f"{self.url}/health", timeout=1.0, verify=False).status_code == 200
        except httpx.HTTPError:
            return False

    def calls(self) -> list[dict[str, Any]]:
        """Every logged call, from the call-log file (a torn last line is skipped)."""
        try:
            lines = self.call_log_path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        found = []
        for line in lines:
            try:
                found.append(json.loads(line))
            except ValueError:
                continue
        return found

    def reset(self) -> None:
        httpx.post(f"{self.url}/reset", timeout=5.0, verify=False).raise_for_status()

    def set_latency(self, model: LatencyModel) -> None:
        """Every later charge is answered after a latency drawn from ``model``."""
        httpx.post(f"{self.url}/latency", json=model.as_dict(), timeout=5.0,
                   verify=False).raise_for_status()


# -- the server ----------------------------------------------------------------


class _State:
    def __init__(self, call_log: Path, honour_keys: bool) -> None:
        self.call_log = call_log
        self.honour_keys = honour_keys
        self.lock = threading.Lock()
        self.charges: dict[str, int] = {}  # idempotency key -> charge number
        self.count = 0
        self.latency = LatencyModel()

    def charge(self, body: dict[str, Any]) -> dict[str, Any]:
        key = str(body.get("key") or body.get("job") or "")
        with self.lock:
            duplicate = key in self.charges
            if duplicate and self.honour_keys:
                number = self.charges[key]
            else:
                self.count += 1
                number = self.count
                self.charges.setdefault(key, number)
            entry = {"ts": time.time(), "job": body.get("job"), "key": key,
                     "pid": body.get("pid"), "charge": number, "duplicate": duplicate,
                     "billed": not (duplicate and self.honour_keys)}
            with self.call_log.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(entry) + "\n")
        return {"charge": number, "duplicate": duplicate}

    def reset(self) -> None:
        with self.lock:
            self.charges.clear()
            self.count = 0
            self.latency = LatencyModel()
            self.call_log.write_text("")


def _handler(state: _State) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

        def do_GET(self) -> None:  # noqa: N802 - the stdlib's hook name
            if self.path == "/health":
                self._send(200, {"ok": True})
            elif self.path == "/calls":
                lines = state.call_log.read_text().splitlines() if state.call_log.exists() \
                    else []
                self._send(200, [json.loads(line) for line in lines if line])
            else:
                self._send(404, {"error": f"no such endpoint {self.path}"})

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b"{}"
            if self.path == "/reset":
                state.reset()
                self._send(200, {"ok": True})
                return
            if self.path == "/latency":
                try:
                    state.latency = LatencyModel.from_dict(json.loads(raw))
                except (ValueError, TypeError, AttributeError) as exc:
                    self._send(422, {"error": str(exc)})
                    return
                self._send(200, state.latency.as_dict())
                return
            if self.path != "/charge":
                self._send(404, {"error": f"no such endpoint {self.path}"})
                return
            try:
                body = json.loads(raw)
                if not isinstance(body, dict) or not body.get("job"):
                    raise ValueError("a charge needs a JSON object with a 'job'")
            except ValueError as exc:
                self._send(400, {"error": str(exc)})
                return
            answer = state.charge(body)
            time.sleep(state.latency.sample_s())
            self._send(200, answer)

        def _send(self, status: int, body: Any) -> None:
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    return Handler


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m harness.services.billing",
                                     description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default=LOOPBACK)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--call-log", type=Path, required=True)
    parser.add_argument("--ignore-keys", action="store_true",
                        help="bill a repeated idempotency key again")
    args = parser.parse_args(argv)
    args.call_log.parent.mkdir(parents=True, exist_ok=True)
    args.call_log.touch()
    server = ThreadingHTTPServer((args.host, args.port),
                                 _handler(_State(args.call_log, not args.ignore_keys)))
    server.daemon_threads = True
    print(f"billing service on http://{args.host}:{args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
