"""Start, drive and stop the transcription service as a real child process."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

import harness
from harness.errors import SetupError
from harness.ports import LOOPBACK, free_port, wait_until
from harness.procs import ManagedProcess, ProcessRegistry
from harness.services.latency import LatencyModel

_ADMIN_TIMEOUT = httpx.Timeout(5.0, connect=1.0)
_START_TIMEOUT = 20.0
_START_ATTEMPTS = 3  # a freshly picked port can be taken before the child binds it


class TranscriptionService:
    """``python -m harness.services.transcription`` on a free loopback port.

    Files go to ``workdir``: ``transcription-calls.jsonl`` (the call log) and
    ``transcription.log`` (the server's own output).
    """

    def __init__(self, workdir: Path, registry: ProcessRegistry | None = None) -> None:
        self.workdir = workdir
        self.registry = registry
        self.call_log_path = workdir / "transcription-calls.jsonl"
        self.log_path = workdir / "transcription.log"
        self._proc: ManagedProcess | None = None
        self._port: int | None = None

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> TranscriptionService:
        """Start the server and wait until it answers; ``SetupError`` with its log if it cannot."""
        if self._proc is not None and self._proc.is_running():
            return self
        self.workdir.mkdir(parents=True, exist_ok=True)
        last_error = ""
        for _ in range(_START_ATTEMPTS):
            port = free_port()
            proc = ManagedProcess(
                "transcription",
                [sys.executable, "-m", "harness.services.transcription", "--host", LOOPBACK,
                 "--port", str(port), "--call-log", str(self.call_log_path)],
                log_path=self.log_path, env=_child_env(), registry=self.registry,
            ).start()
            self._proc, self._port = proc, port
            try:
                wait_until(self._healthy, timeout=_START_TIMEOUT, alive=proc.is_running,
                           what=f"transcription service on port {port}")
                return self
            except (RuntimeError, TimeoutError) as exc:
                proc.kill()
                self._proc = self._port = None
                last_error = f"{exc}\n--- {self.log_path} (tail) ---\n{proc.log_tail()}"
                if "address already in use" not in last_error.lower():
                    break
        raise SetupError(f"the transcription service did not start: {last_error}")

    def stop(self) -> None:
        """SIGTERM the server (SIGKILL after a grace period) and reap it; safe to repeat."""
        if self._proc is not None:
            self._proc.stop()
            self._proc = None

    def __enter__(self) -> TranscriptionService:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.is_running()

    @property
    def process(self) -> ManagedProcess:
        if self._proc is None:
            raise RuntimeError("the transcription service is not running")
        return self._proc

    # -- addresses -----------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the transcription service is not running")
        return self._port

    @property
    def url(self) -> str:
        """The server root, e.g. ``http://127.0.0.1:PORT``."""
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def base_url(self) -> str:
        """What ``AsyncOpenAI(base_url=...)`` needs, e.g. ``http://127.0.0.1:PORT/v1``."""
        return f"{self.url}/v1"

    # -- admin ---------------------------------------------------------------

    def calls(self) -> list[dict[str, Any]]:
        """Every logged call, read from the call-log file (a torn last line is skipped)."""
        try:
            lines = self.call_log_path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        calls: list[dict[str, Any]] = []
        for line in lines:
            try:
                calls.append(json.loads(line))
            except ValueError:
                continue
        return calls

    def status(self, key: str) -> dict[str, Any]:
        """What the service knows about an idempotency key (``GET .../status/{key}``)."""
        result: dict[str, Any] = self._admin("GET", f"/v1/audio/transcriptions/status/{key}")
        return result

    def set_fault(self, *, status: int | None = None, count: int | None = None,
                  latency_ms: int = 0, hang: bool = False, job_id: str | None = None,
                  chunk_index: int | None = None) -> dict[str, Any]:
        """Replace the active faults with this one; returns it as the server holds it.

        ``status`` answers matching calls with that HTTP error; ``count`` limits
        how many calls it hits (``None``: until cleared); ``latency_ms`` delays
        the answer; ``hang`` holds calls until ``clear_faults``; ``job_id`` and
        ``chunk_index`` restrict it to calls with those ``X-Crashlab-*`` headers.
        """
        return self._post_fault(status=status, count=count, latency_ms=latency_ms, hang=hang,
                                job_id=job_id, chunk_index=chunk_index, replace=True)

    def add_fault(self, *, status: int | None = None, count: int | None = None,
                  latency_ms: int = 0, hang: bool = False, job_id: str | None = None,
                  chunk_index: int | None = None) -> dict[str, Any]:
        """Like ``set_fault`` but keeps the active faults (the first match applies)."""
        return self._post_fault(status=status, count=count, latency_ms=latency_ms, hang=hang,
                                job_id=job_id, chunk_index=chunk_index, replace=False)

    def faults(self) -> list[dict[str, Any]]:
        """The active faults, with how many calls each has hit (``fired``)."""
        result: list[dict[str, Any]] = self._admin("GET", "/_admin/faults")
        return result

    def clear_faults(self) -> None:
        """Heal: remove every fault and release hung calls."""
        self._admin("DELETE", "/_admin/faults")

    def set_latency(self, model: LatencyModel) -> None:
        """Every later call waits a latency drawn from ``model`` (median 0: none)."""
        self._admin("POST", "/_admin/latency", json=model.as_dict())

    def set_behaviour(self, *, honour_keys: bool = True, status_endpoint: bool = True) -> None:
        """Honour idempotency keys or ignore them (every call billed), answer status
        queries or 404 them (``harness.services.transcription``)."""
        self._admin("POST", "/_admin/behaviour", json={
            "idempotency_keys": "honoured" if honour_keys else "ignored",
            "status_endpoint": status_endpoint})

    def reset(self) -> None:
        """Forget stored results, faults, latency, behaviour and calls, and truncate the
        call log."""
        self._admin("POST", "/_admin/reset")

    def _post_fault(self, **spec: Any) -> dict[str, Any]:
        result: dict[str, Any] = self._admin("POST", "/_admin/faults", json=spec)
        return result

    def _admin(self, method: str, path: str, json: Any = None) -> Any:
        # plain HTTP on loopback: verify=False skips loading the CA bundle (~50 ms of CPU)
        response = httpx.request(method, self.url + path, json=json, timeout=_ADMIN_TIMEOUT,
                                 verify=False)
        if response.status_code >= 400:
            raise RuntimeError(f"transcription service {method} {path}: "
                               f"HTTP {response.status_code}: {response.text}")
        return response.json()

    def _healthy(self) -> bool:
        try:
            response = httpx.get(f"{self.url}/_admin/health", timeout=0.5, verify=False)
        except httpx.HTTPError:
            return False
        return response.status_code == 200


def _child_env() -> dict[str, str]:
    """This environment, with this checkout of ``harness`` first on the import path."""
    env = dict(os.environ)
    root = str(Path(harness.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env
