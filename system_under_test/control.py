"""The worker's control channel: failpoints over plain HTTP on loopback.

It is served by the worker itself on ``CRASHLAB_CONTROL_URL`` and never
touches Redis, so it keeps answering while the data connection is cut or
Redis is down. It is deliberately tiny (HTTP/1.1, one request per
connection, JSON bodies) so it adds no dependency and no startup cost.

    GET    /points                 the failpoint catalog {name: description}
    GET    /failpoints             armed points {name: {actions, hits}}
    PUT    /failpoints/<name>      arm; body is the action text, e.g. "2*off->pause"
    DELETE /failpoints/<name>      disarm (releases anything paused there)
    GET    /hits?since=N&wait=S    hits after id N, waiting up to S seconds for one
    POST   /release[/<name>]       release paused hits (at one point or all)
    GET    /status                 worker id, pid and the jobs it holds
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

from system_under_test.failpoints import POINTS, Failpoints

log = logging.getLogger(__name__)

_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}
_MAX_BODY = 64 * 1024


class ControlServer:
    def __init__(
        self,
        failpoints: Failpoints,
        address: tuple[str, int],
        status: Callable[[], dict[str, Any]],
    ) -> None:
        self.failpoints = failpoints
        self.address = address
        self.status = status
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        host, port = self.address
        self._server = await asyncio.start_server(self._serve, host, port)
        log.info("control channel listening on http://%s:%d", host, port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            status, body = await self._handle(reader)
        except (ValueError, asyncio.IncompleteReadError, ConnectionError) as exc:
            status, body = 400, {"error": str(exc)}
        payload = json.dumps(body).encode()
        head = (
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
            "Connection: close\r\n\r\n"
        )
        try:
            writer.write(head.encode() + payload)
            await writer.drain()
            writer.close()
        except ConnectionError:
            pass

    async def _handle(self, reader: asyncio.StreamReader) -> tuple[int, Any]:
        request_line = (await reader.readline()).decode("latin-1").strip()
        method, _, rest = request_line.partition(" ")
        target = rest.rpartition(" ")[0] or rest
        length = 0
        while True:
            line = (await reader.readline()).decode("latin-1").strip()
            if not line:
                break
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        if length > _MAX_BODY:
            raise ValueError("request body too large")
        body = (await reader.readexactly(length)).decode() if length else ""
        url = urlsplit(target)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        parts = [p for p in url.path.split("/") if p]
        return await self._route(method.upper(), parts, query, body)

    async def _route(
        self, method: str, parts: list[str], query: dict[str, str], body: str
    ) -> tuple[int, Any]:
        fps = self.failpoints
        match method, parts:
            case "GET", ["points"]:
                return 200, POINTS
            case "GET", ["failpoints"]:
                return 200, fps.armed()
            case "PUT", ["failpoints", name]:
                try:
                    fps.arm(name, body.strip())
                except ValueError as exc:
                    return 400, {"error": str(exc)}
                return 200, fps.armed()
            case "DELETE", ["failpoints", name]:
                fps.disarm(name)
                return 200, fps.armed()
            case "GET", ["hits"]:
                since = int(query.get("since", "0"))
                wait = min(float(query.get("wait", "0")), 30.0)
                hits = await fps.wait_for_hits(since, wait) if wait > 0 else fps.hits[since:]
                return 200, {"hits": [h.to_json() for h in hits]}
            case "POST", ["release", *point]:
                return 200, {"released": fps.release(point[0] if point else None)}
            case "GET", ["status"]:
                return 200, {"pid": os.getpid(), **self.status()}
            case _, (["points"] | ["failpoints", *_] | ["hits"] | ["release", *_] | ["status"]):
                return 405, {"error": f"{method} not allowed here"}
        return 404, {"error": f"no such control endpoint: /{'/'.join(parts)}"}
