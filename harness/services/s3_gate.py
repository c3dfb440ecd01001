"""A small real HTTP reverse proxy in front of the moto server: S3's error replies on demand.

Toxiproxy works on TCP bytes and cannot answer an HTTP request, and moto has
no switch that makes its S3 answer errors. So the workers' S3 traffic goes
worker -> its Toxiproxy slot (``s3-<slot>``, cuts, latency, lost replies) ->
this gate -> moto. The gate forwards every request unchanged and returns
moto's answer, unless an error rule is set: then the next matching requests
(``count`` of them, or all of them until a deadline) are answered by the gate
itself with S3's own error (``503 SlowDown`` or ``500 InternalError`` with
its XML body and a request id) and never reach moto, as S3 refuses a request
it is too busy for: nothing is stored.

A request can also be *held* (``hold``): the next one of the given operations
waits in the gate, its whole body received, until ``release``. The S3 lost
reply uses that to put its toxic on the worker's proxy after the request has
passed it and before the answer comes back: the ``100 Continue`` the gate
sends before the body (botocore asks for it on every upload) must get
through, and only the final answer be lost.

Every request is logged (``calls``): operation, part number, the status it
got and whether the gate answered it; the reference pack copies the log
into the history (``s3_call``), so a run shows each refused call and the
retry that followed.

The server is a ``ThreadingHTTPServer`` thread of the harness on a loopback
port the OS picks (bound at once, so no other process can take it between
picking and binding). It speaks HTTP/1.1 with keep-alive (botocore keeps its
connections open) and honours ``Expect: 100-continue``. ``stop()`` shuts it
down; it dies with the harness otherwise.
"""

from __future__ import annotations

import http.client
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from harness.ports import LOOPBACK

log = logging.getLogger(__name__)

# S3's error codes and messages for the statuses the gate answers
ERRORS: dict[int, tuple[str, str]] = {
    503: ("SlowDown", "Please reduce your request rate."),
    500: ("InternalError", "We encountered an internal error. Please try again."),
}
# headers that belong to one hop, never forwarded
_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "proxy-authenticate",
                  "proxy-authorization", "te", "trailer", "transfer-encoding", "upgrade",
                  "expect", "content-length"})
UPSTREAM_TIMEOUT_S = 60.0
HOLD_MAX_S = 30.0  # a held request goes on by itself after this long


def operation(method: str, path: str) -> tuple[str, int | None]:
    """The S3 operation a request is (path-style addressing) and its part number."""
    query = parse_qs(urlsplit(path).query, keep_blank_values=True)
    part = int(query["partNumber"][0]) if query.get("partNumber", [""])[0].isdigit() else None
    parts = [p for p in urlsplit(path).path.split("/") if p]
    on_object = len(parts) >= 2
    if method == "PUT":
        if "uploadId" in query and part is not None:
            return "UploadPart", part
        return ("PutObject" if on_object else "CreateBucket"), None
    if method == "POST":
        if "uploads" in query:
            return "CreateMultipartUpload", None
        if "uploadId" in query:
            return "CompleteMultipartUpload", None
        return "Post", None
    if method == "DELETE":
        if "uploadId" in query:
            return "AbortMultipartUpload", None
        return ("DeleteObject" if on_object else "DeleteBucket"), None
    if method == "HEAD":
        return ("HeadObject" if on_object else "HeadBucket"), None
    if "uploadId" in query:
        return "ListParts", None
    if "uploads" in query:
        return "ListMultipartUploads", None
    return ("GetObject" if on_object else "ListObjects"), None


@dataclass
class _Rule:
    status: int
    left: int | None  # requests still to refuse; None: every one until ``until``
    until: float | None  # monotonic deadline; None: until ``left`` runs out or cleared
    operations: frozenset[str] | None  # None: any operation
    fired: int = 0

    def takes(self, op: str, now: float) -> bool:
        if self.until is not None and now >= self.until:
            return False
        if self.left is not None and self.left <= 0:
            return False
        return self.operations is None or op in self.operations


class S3Gate:
    """The gate in front of one moto server at ``upstream_port``."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self._lock = threading.Lock()
        self._rule: _Rule | None = None
        self._calls: list[dict[str, Any]] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._holding = False
        self._hold: frozenset[str] | None = None  # of these operations (None: any)
        self._held = threading.Event()  # a held request arrived
        self._release = threading.Event()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the S3 gate has not been started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def start(self) -> S3Gate:
        if self._server is not None:
            raise RuntimeError("the S3 gate is already running")
        gate = self

        class Handler(_Handler):
            owner = gate

        server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="s3-gate",
                                        kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()
        log.info("S3 gate on %s -> moto on port %d", self.url, self.upstream_port)
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        log.info("S3 gate stopped")

    # -- faults ----------------------------------------------------------------

    def set_errors(self, status: int, *, count: int | None = None,
                   duration_s: float | None = None,
                   operations: frozenset[str] | None = None) -> None:
        """Answer the next ``count`` matching requests (or all of them for ``duration_s``,
        or both limits) with S3's error for ``status``, instead of forwarding them."""
        if status not in ERRORS:
            raise ValueError(f"the S3 gate answers {sorted(ERRORS)}, not {status}")
        if count is None and duration_s is None:
            raise ValueError("an S3 error rule needs a count or a duration")
        until = None if duration_s is None else time.monotonic() + duration_s
        with self._lock:
            self._rule = _Rule(status, count, until, operations)

    def fired(self) -> int:
        """How many requests the current rule has answered."""
        with self._lock:
            return 0 if self._rule is None else self._rule.fired

    def clear(self) -> int:
        """No more error replies; how many the rule answered."""
        with self._lock:
            rule, self._rule = self._rule, None
        return 0 if rule is None else rule.fired

    def hold(self, operations: frozenset[str] | None = None) -> None:
        """Hold the next request (of ``operations``; None: any) in the gate, once its
        body is in."""
        with self._lock:
            self._held.clear()
            self._release.clear()
            self._holding, self._hold = True, operations

    def wait_held(self, timeout: float) -> bool:
        """Whether the held request arrived within ``timeout`` seconds."""
        return self._held.wait(timeout)

    def release(self) -> None:
        """Let the held request (if any) go on to S3; hold nothing more."""
        with self._lock:
            self._holding, self._hold = False, None
            self._release.set()

    def calls(self) -> list[dict[str, Any]]:
        """Every request so far: {seq, call_ts, method, operation, part, status, refused}."""
        with self._lock:
            return [dict(call) for call in self._calls]

    def reset(self) -> None:
        """No rule, nothing held and an empty call log (between the runs of a session)."""
        self.release()
        with self._lock:
            self._rule = None
            self._calls.clear()

    # -- used by the handler ---------------------------------------------------

    def _refusal(self, op: str) -> int | None:
        with self._lock:
            rule = self._rule
            if rule is None or not rule.takes(op, time.monotonic()):
                return None
            rule.fired += 1
            if rule.left is not None:
                rule.left -= 1
            return rule.status

    def _wait_if_held(self, op: str) -> None:
        with self._lock:
            if not self._holding or (self._hold is not None and op not in self._hold):
                return
            self._holding = False  # only the next one
            self._held.set()
        self._release.wait(HOLD_MAX_S)

    def _log(self, method: str, op: str, part: int | None, status: int, refused: bool) -> None:
        with self._lock:
            self._calls.append({"seq": len(self._calls) + 1, "call_ts": time.time(),
                                "method": method, "operation": op, "part": part,
                                "status": status, "refused": refused})


class _Handler(BaseHTTPRequestHandler):
    owner: S3Gate
    protocol_version = "HTTP/1.1"  # keep-alive, and 100-continue handled for us

    def do_GET(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def do_HEAD(self) -> None:
        self._serve()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        log.debug("s3 gate: " + format, *args)

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline().strip():  # trailers
                        pass
                    return bytes(data)
                data += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _serve(self) -> None:
        op, part = operation(self.command, self.path)
        try:
            body = self._body()
            expected = self.headers.get("Content-Length")
            if expected is not None and len(body) != int(expected):
                self.close_connection = True  # cut mid-body: the request never arrived
                return
            self.owner._wait_if_held(op)
            status = self.owner._refusal(op)
            if status is not None:
                # logged before the answer is written: a client that has it sees it logged
                self.owner._log(self.command, op, part, status, refused=True)
                self._refuse(status)
                return
            self._forward(body, lambda status: self.owner._log(self.command, op, part, status,
                                                               refused=False))
        except OSError:  # the client went away (a cut, a lost reply), or moto did
            self.close_connection = True

    def _refuse(self, status: int) -> None:
        code, message = ERRORS[status]
        request_id = uuid.uuid4().hex[:16].upper()
        resource = urlsplit(self.path).path
        xml = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
               f"<Message>{message}</Message><Resource>{resource}</Resource>"
               f"<RequestId>{request_id}</RequestId></Error>").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("x-amz-request-id", request_id)
        self.send_header("Content-Length", "0" if self.command == "HEAD" else str(len(xml)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(xml)

    def _forward(self, body: bytes, answered: Callable[[int], None]) -> None:
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
        headers["Content-Length"] = str(len(body))
        upstream = http.client.HTTPConnection(LOOPBACK, self.owner.upstream_port,
                                              timeout=UPSTREAM_TIMEOUT_S)
        try:
            upstream.request(self.command, self.path, body=body, headers=headers)
            answer = upstream.getresponse()
            data = answer.read()
            length = answer.getheader("Content-Length")
            answered(answer.status)
            self.send_response_only(answer.status, answer.reason)
            for name, value in answer.getheaders():
                if name.lower() not in _HOP:
                    self.send_header(name, value)
            if self.command == "HEAD":
                self.send_header("Content-Length", length or "0")
            else:
                self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD" and answer.status not in (204, 304):
                self.wfile.write(data)
        finally:
            upstream.close()
