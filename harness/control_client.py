"""Client of a worker's failpoint control channel (see ``system_under_test.control``).

The channel is plain HTTP on loopback served by the worker itself, so it
works while the worker's Redis connection is cut. This module is the only
place the harness speaks that protocol; the wire format is the target's
contract, not an import of the worker's code.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx

from harness.errors import CrashlabError


class ControlError(CrashlabError):
    """The control channel refused a request or did not answer."""


@dataclass(frozen=True)
class FailpointHit:
    """A worker stopped (or raised) at an armed point."""

    id: int
    point: str
    action: str
    hit: int
    worker_id: str
    pid: int
    job: str | None
    chunk: int | None
    ts: float

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FailpointHit:
        return cls(int(data["id"]), data["point"], data["action"], int(data["hit"]),
                   data["worker_id"], int(data["pid"]), data.get("job"), data.get("chunk"),
                   float(data["ts"]))


class ControlClient:
    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self._seen = 0

    def _request(self, method: str, path: str, *, content: str | None = None,
                 timeout: float = 3.0) -> Any:
        try:
            # plain HTTP on loopback: verify=False skips loading the CA bundle, which
            # costs ~50 ms of CPU per request (readiness and hit polls are frequent)
            response = httpx.request(method, f"{self.url}{path}", content=content,
                                     timeout=timeout, verify=False)
        except httpx.HTTPError as exc:
            raise ControlError(f"control channel {self.url} did not answer {method} {path}: "
                               f"{exc}") from exc
        if response.status_code != 200:
            raise ControlError(f"control channel refused {method} {path}: "
                               f"{response.status_code} {response.text}")
        return response.json()

    def ready(self) -> bool:
        try:
            self._request("GET", "/status", timeout=0.5)
            return True
        except ControlError:
            return False

    def points(self) -> dict[str, str]:
        result: dict[str, str] = self._request("GET", "/points")
        return result

    def arm(self, point: str, actions: str) -> None:
        self._request("PUT", f"/failpoints/{point}", content=actions)

    def disarm(self, point: str) -> None:
        self._request("DELETE", f"/failpoints/{point}")

    def armed(self) -> dict[str, Any]:
        result: dict[str, Any] = self._request("GET", "/failpoints")
        return result

    def status(self, timeout: float = 3.0) -> dict[str, Any]:
        result: dict[str, Any] = self._request("GET", "/status", timeout=timeout)
        return result

    def release(self, point: str | None = None) -> int:
        path = "/release" if point is None else f"/release/{point}"
        return int(self._request("POST", path)["released"])

    def hits(self, since: int = 0, wait: float = 0.0,
             timeout: float = 3.0) -> list[FailpointHit]:
        """Hits after id ``since``; ``timeout`` bounds the answer beyond ``wait`` (a frozen
        worker never answers)."""
        data = self._request("GET", f"/hits?since={since}&wait={wait}", timeout=wait + timeout)
        return [FailpointHit.from_json(item) for item in data["hits"]]

    def wait_for_hit(self, point: str | None = None, timeout: float = 30.0) -> FailpointHit | None:
        """The next hit (at ``point``, if given) not yet returned, or None after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            for hit in self.hits(self._seen, wait=min(left, 5.0)):
                self._seen = max(self._seen, hit.id)
                if point is None or hit.point == point:
                    return hit
