"""Failpoints for any worker: ``failpoint("name")`` where a harness may stop, slow or break it.

This module is the one piece of crashlab that user code imports. It uses the
standard library only, so importing it adds nothing to a worker, and an
unarmed point costs one dict lookup (nothing at all outside a crashlab run,
when ``CRASHLAB_CONTROL_URL`` and ``CRASHLAB_FAILPOINTS`` are both unset)::

    from harness.failpoint import failpoint, afailpoint

    def charge(order_id):                  # an RQ job, say
        failpoint("charge.before_call", job=order_id)
        receipt = billing.charge(order_id)
        failpoint("charge.after_call", job=order_id)

    async def charge_async(ctx, order_id):  # an arq job
        await afailpoint("charge.before_call", job=order_id)

``record(job, "effect")`` appends to the run's effects ledger (below).

Action grammar (``CRASHLAB_FAILPOINTS`` or the control channel)::

    spec    := point "=" actions { ";" point "=" actions }
    actions := term { "->" term }
    term    := [ count "*" ] kind [ "(" arg ")" ]
    kind    := off | pause | sleep(ms) | error

Terms apply in order; a term with a count applies to that many hits, then the
next term takes over; a term without a count applies to every later hit
(``2*off->pause`` lets two hits pass and pauses the third and every later
one). ``pause`` records the hit (point, worker id, pid, hit number, job,
chunk) and blocks until the harness releases it or kills the process;
``error`` raises ``FailpointError``.

The control channel is the protocol ``harness.control_client`` speaks, served
over plain HTTP on loopback by ``serve()`` in a daemon thread, so it keeps
answering while the worker's Redis connection is cut::

    GET    /points                 the declared points {name: description}
    GET    /failpoints             armed points {name: {actions, hits}}
    PUT    /failpoints/<name>      arm; body is the action text
    DELETE /failpoints/<name>      disarm (releases anything paused there)
    GET    /hits?since=N&wait=S    hits after id N, waiting up to S seconds for one
    POST   /release[/<name>]       release paused hits (at one point or all)
    GET    /status                 worker id and pid
    POST   /enter/<name>?pid=&job=&chunk=   a hit from a forked child (below)

Forked children (RQ's work horse, a prefork pool's processes) share the
serving process's counts: a child's ``failpoint`` asks the server over
``/enter``, which counts the hit, decides its action and, for ``pause``,
answers only once released. The hit carries the child's pid, so a harness
can kill the child alone.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

log = logging.getLogger(__name__)

CONTROL_URL_ENV = "CRASHLAB_CONTROL_URL"
FAILPOINTS_ENV = "CRASHLAB_FAILPOINTS"
WORKER_ID_ENV = "CRASHLAB_WORKER_ID"
LEDGER_ENV = "CRASHLAB_LEDGER"  # the effects ledger file a run's jobs append to
MAX_WAIT_S = 30.0  # the longest a /hits long poll is held


class FailpointError(RuntimeError):
    """Raised by a point armed with ``error``."""


class Kind(StrEnum):
    OFF = "off"
    PAUSE = "pause"
    SLEEP = "sleep"
    ERROR = "error"


@dataclass(frozen=True)
class Term:
    kind: Kind
    count: int | None = None  # None: every remaining hit
    arg: int = 0

    def text(self) -> str:
        body = f"{self.kind.value}({self.arg})" if self.kind is Kind.SLEEP else self.kind.value
        return f"{self.count}*{body}" if self.count is not None else body


_TERM = re.compile(r"^\s*(?:(\d+)\s*\*)?\s*(off|pause|sleep|error)\s*(?:\(\s*(\d+)\s*\))?\s*$")


def parse_actions(text: str) -> tuple[Term, ...]:
    """Parse ``2*off->pause``; ``ValueError`` naming the bad term."""
    terms = []
    for raw in text.split("->"):
        match = _TERM.match(raw)
        if not match:
            raise ValueError(f"bad failpoint action {raw.strip()!r} in {text!r}: expected "
                             "[N*]off|pause|sleep(MS)|error, joined by '->'")
        count, kind, arg = match.groups()
        if kind == "sleep" and arg is None:
            raise ValueError(f"bad failpoint action {raw.strip()!r}: "
                             "sleep needs milliseconds, e.g. sleep(200)")
        terms.append(Term(Kind(kind), int(count) if count else None, int(arg or 0)))
    return tuple(terms)


def parse_spec(text: str) -> dict[str, tuple[Term, ...]]:
    """Parse ``point=actions;point=actions``."""
    armed: dict[str, tuple[Term, ...]] = {}
    for item in filter(None, (part.strip() for part in text.split(";"))):
        name, sep, actions = item.partition("=")
        if not sep:
            raise ValueError(f"bad failpoint {item!r}: expected POINT=ACTIONS")
        armed[name.strip()] = parse_actions(actions)
    return armed


def action_for(terms: tuple[Term, ...], hit: int) -> Term:
    """The term that applies to the ``hit``-th hit (1-based); off once every count ran out."""
    seen = 0
    for term in terms:
        if term.count is None:
            return term
        seen += term.count
        if hit <= seen:
            return term
    return Term(Kind.OFF)


@dataclass
class _Armed:
    terms: tuple[Term, ...]
    hits: int = 0
    releases: list[threading.Event] = field(default_factory=list)


class Registry:
    """The armed points of one process (the one that serves the control channel)."""

    def __init__(self, worker_id: str, spec: str = "",
                 points: dict[str, str] | None = None) -> None:
        self.worker_id = worker_id
        self.points = dict(points or {})  # empty: any name may be armed
        self.hits: list[dict[str, Any]] = []
        self._armed: dict[str, _Armed] = {}
        self._lock = threading.Lock()
        self._hit_added = threading.Condition(self._lock)
        for name, terms in parse_spec(spec).items():
            self._check(name)
            self._armed[name] = _Armed(terms)

    def _check(self, name: str) -> None:
        if self.points and name not in self.points:
            raise ValueError(f"unknown failpoint {name!r}; known points: {', '.join(self.points)}")

    def is_armed(self, name: str) -> bool:
        return name in self._armed

    def arm(self, name: str, actions: str) -> None:
        self._check(name)
        terms = parse_actions(actions)
        self.disarm(name)
        with self._lock:
            self._armed[name] = _Armed(terms)
        log.info("failpoint armed: %s=%s", name, actions)

    def disarm(self, name: str) -> None:
        with self._lock:
            armed = self._armed.pop(name, None)
        for event in armed.releases if armed else ():
            event.set()

    def release(self, name: str | None = None) -> int:
        """Let paused hits go on (at ``name``, or everywhere); returns how many."""
        count = 0
        with self._lock:
            for point, armed in self._armed.items():
                if name is None or point == name:
                    count += sum(not event.is_set() for event in armed.releases)
                    for event in armed.releases:
                        event.set()
                    armed.releases.clear()
            for hit in self.hits:
                if name is None or hit["point"] == name:
                    hit["released"] = True
        return count

    def armed(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {name: {"actions": "->".join(t.text() for t in a.terms), "hits": a.hits}
                    for name, a in self._armed.items()}

    def enter(self, name: str, *, pid: int, job: str | None,
              chunk: int | None) -> tuple[Term, threading.Event | None]:
        """Count a hit of ``name``; its action, and the event a pause waits on."""
        with self._lock:
            armed = self._armed.get(name)
            if armed is None:
                return Term(Kind.OFF), None
            armed.hits += 1
            term = action_for(armed.terms, armed.hits)
            if term.kind in (Kind.OFF, Kind.SLEEP):
                return term, None
            before_hit_reported()
            self.hits.append({"id": len(self.hits) + 1, "point": name, "action": term.kind.value,
                              "hit": armed.hits, "worker_id": self.worker_id, "pid": pid,
                              "job": job, "chunk": chunk, "ts": time.time(),
                              "released": False})
            release = None
            if term.kind is Kind.PAUSE:
                release = threading.Event()
                armed.releases.append(release)
            self._hit_added.notify_all()
        log.warning("failpoint hit: %s (pid %d, job %s)", name, pid, job)
        return term, release

    def wait_for_hits(self, since: int, timeout: float) -> list[dict[str, Any]]:
        """Hits with id > ``since``, waiting up to ``timeout`` for the first one."""
        with self._hit_added:
            self._hit_added.wait_for(lambda: len(self.hits) > since, timeout)
            return [dict(hit) for hit in self.hits[since:]]


# -- hooks run before a pause or an error is reported --------------------------

# A harness may SIGKILL the process the moment it sees a hit, so whatever must
# survive the kill (``harness.coverage_launch`` saves its coverage data) runs
# here, before the hit is visible on the control channel.
_hit_hooks: list[Callable[[], None]] = []


def on_hit(hook: Callable[[], None]) -> None:
    """Call ``hook()`` in this process before each pause or error hit is reported."""
    _hit_hooks.append(hook)


def before_hit_reported() -> None:
    """Run the ``on_hit`` hooks; a hook that raises is logged, never the worker's failure."""
    for hook in list(_hit_hooks):
        try:
            hook()
        except Exception:  # noqa: BLE001 - a hook must not change what the worker does
            log.exception("failpoint hook %r failed", hook)


# -- the process-wide state ---------------------------------------------------

_registry: Registry | None = None
_server_pid: int | None = None  # the process whose thread serves the control channel
_server: ThreadingHTTPServer | None = None
_enabled = bool(os.environ.get(CONTROL_URL_ENV) or os.environ.get(FAILPOINTS_ENV))


def registry() -> Registry:
    """This process's registry, made from the environment on first use."""
    global _registry
    if _registry is None:
        _registry = Registry(os.environ.get(WORKER_ID_ENV, f"pid-{os.getpid()}"),
                             os.environ.get(FAILPOINTS_ENV, ""))
    return _registry


def serve(points: dict[str, str] | None = None) -> str | None:
    """Serve the control channel on ``CRASHLAB_CONTROL_URL`` in a daemon thread.

    ``points`` declares the catalog (``GET /points``; arming another name is
    refused). Returns the URL served, or None when the variable is unset.
    Call it once, in the process that forks the children running jobs.
    """
    global _server, _server_pid, _enabled
    url = os.environ.get(CONTROL_URL_ENV, "")
    if points:
        reg = registry()
        reg.points = dict(points)
        for name in list(reg.armed()):
            reg._check(name)
    if not url:
        return None
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 0
    _server = ThreadingHTTPServer((host, port), _Handler)
    _server.daemon_threads = True
    _server_pid = os.getpid()
    _enabled = True
    registry()
    threading.Thread(target=_server.serve_forever, name="crashlab-control", daemon=True).start()
    log.info("failpoint control channel listening on %s", url)
    return url


def failpoint(name: str, *, job: str | None = None, chunk: int | None = None) -> None:
    """Stop, slow or fail here if the harness armed ``name``; else return at once."""
    if not _enabled:
        return
    if _server_pid is not None and os.getpid() != _server_pid:
        _enter_remote(name, job, chunk)  # a forked child: the server counts its hits
        return
    reg = registry()
    if not reg.is_armed(name):
        return
    term, release = reg.enter(name, pid=os.getpid(), job=job, chunk=chunk)
    _act(name, term, release)


async def afailpoint(name: str, *, job: str | None = None, chunk: int | None = None) -> None:
    """``failpoint`` for a coroutine: a pause or a sleep does not block the event loop."""
    if not _enabled:
        return
    if _server_pid is not None and os.getpid() != _server_pid:
        await asyncio.to_thread(_enter_remote, name, job, chunk)
        return
    reg = registry()
    if not reg.is_armed(name):
        return
    term, release = reg.enter(name, pid=os.getpid(), job=job, chunk=chunk)
    if term.kind is Kind.SLEEP:
        await asyncio.sleep(term.arg / 1000)
    elif release is not None:
        await asyncio.to_thread(release.wait)
    else:
        _act(name, term, None)


def record(job: str, what: str, **fields: object) -> None:
    """Append one line to the run's effects ledger (``CRASHLAB_LEDGER``), if there is one.

    A job writes ``record(job_id, "start")`` when an attempt begins and
    ``record(job_id, "effect")`` once its side effect was applied; the harness
    judges "at most once" and "at least once" from these lines, not from the
    queue's own bookkeeping. The line is written with one ``write`` on a file
    opened for appending, so concurrent workers do not interleave.
    """
    path = os.environ.get(LEDGER_ENV)
    if not path:
        return
    line = json.dumps({"job": job, "what": what, "pid": os.getpid(),
                       "worker": os.environ.get(WORKER_ID_ENV), "ts": time.time(), **fields})
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def _act(name: str, term: Term, release: threading.Event | None) -> None:
    if term.kind is Kind.SLEEP:
        time.sleep(term.arg / 1000)
    elif term.kind is Kind.ERROR:
        raise FailpointError(f"failpoint {name} armed with error")
    elif release is not None:
        release.wait()


def _enter_remote(name: str, job: str | None, chunk: int | None) -> None:
    """A forked child's hit, decided (and, for a pause, held) by the serving process."""
    query = f"pid={os.getpid()}&job={job or ''}&chunk={'' if chunk is None else chunk}"
    url = f"{os.environ[CONTROL_URL_ENV].rstrip('/')}/enter/{name}?{query}"
    request = urllib.request.Request(url, method="POST", data=b"")
    try:
        with urllib.request.urlopen(request, timeout=None) as response:  # noqa: S310 - loopback
            answer = json.loads(response.read())
    except (urllib.error.URLError, OSError) as exc:
        log.warning("failpoint %s: control channel did not answer (%s); going on", name, exc)
        return
    term = Term(Kind(answer["action"]), arg=int(answer.get("arg", 0)))
    if term.kind is Kind.SLEEP:
        time.sleep(term.arg / 1000)
    elif term.kind is Kind.ERROR:
        raise FailpointError(f"failpoint {name} armed with error")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib's name
        log.debug("control: " + format, *args)

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's hook names
        self._route("GET")

    def do_PUT(self) -> None:  # noqa: N802
        self._route("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._route("DELETE")

    def do_POST(self) -> None:  # noqa: N802
        self._route("POST")

    def _route(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        parts = [p for p in url.path.split("/") if p]
        try:
            status, answer = _answer(method, parts, query, body)
        except ValueError as exc:
            status, answer = 400, {"error": str(exc)}
        payload = json.dumps(answer).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(payload)
        except OSError:
            pass  # the asker is gone (a child killed while paused)
        self.close_connection = True


def _answer(method: str, parts: list[str], query: dict[str, str],
            body: str) -> tuple[int, Any]:
    reg = registry()
    match method, parts:
        case "GET", ["points"]:
            return 200, reg.points
        case "GET", ["failpoints"]:
            return 200, reg.armed()
        case "PUT", ["failpoints", name]:
            reg.arm(name, body.strip())
            return 200, reg.armed()
        case "DELETE", ["failpoints", name]:
            reg.disarm(name)
            return 200, reg.armed()
        case "GET", ["hits"]:
            since = int(query.get("since", "0"))
            wait = min(float(query.get("wait", "0")), MAX_WAIT_S)
            return 200, {"hits": reg.wait_for_hits(since, wait)}
        case "POST", ["release", *point]:
            return 200, {"released": reg.release(point[0] if point else None)}
        case "GET", ["status"]:
            return 200, {"pid": os.getpid(), "worker_id": reg.worker_id}
        case "POST", ["enter", name]:
            chunk = query.get("chunk")
            term, release = reg.enter(name, pid=int(query.get("pid") or 0),
                                      job=query.get("job") or None,
                                      chunk=int(chunk) if chunk else None)
            if release is not None:
                release.wait()
            return 200, {"action": term.kind.value, "arg": term.arg}
    return 404, {"error": f"no such control endpoint: {method} /{'/'.join(parts)}"}
