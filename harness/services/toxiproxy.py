"""A real Toxiproxy server, and the proxies through which a worker reaches Redis.

``ToxiproxyServer`` runs ``toxiproxy-server -host 127.0.0.1 -port P
-proxy-metrics`` as a child process; ``create_proxy`` puts a named TCP proxy on
a free loopback port in front of an upstream port, and the ``Proxy`` it returns
injects the network faults: sever (``disable``), latency, connection resets,
black holes, replies dropped after the command went through (``limit_data``),
and counts the bytes that went each way (its metrics).
This module is the only place in the harness that talks to Toxiproxy.

Why this adapter speaks the REST API with httpx instead of driving the
``toxiproxy-python`` client (version 0.1.1, read in full before deciding):

* No call has a timeout (bare ``requests.get/post/delete``). A Toxiproxy
  that accepts connections but does not answer would hang the harness
  forever, in the middle of a run that must end with its faults healed.
  Here every request has a timeout.
* Host and port are class attributes of ``APIConsumer`` shared by the whole
  process, so two servers (parallel runs, tests) would silently talk to
  whichever was configured last. Here each server has its own HTTP client.
* Only 400, 404 and 409 are raised; any other status is returned as if it
  had worked. Re-enabling a proxy whose port was taken meanwhile answers 500
  ("address already in use") and the client reports success while the proxy
  stays down. Here every non-2xx answer raises ``ToxiproxyError`` with the
  server's message.
* ``create`` lists all proxies first (an extra round trip, and a race), toxic
  calls return nothing, and there is no "remove all toxics".
* It depends on ``requests`` and the Python 2 ``future`` package, which
  crashlab otherwise does not need.

With a timeout, a per-server address and status checks needed around every
call, there was nothing left for the client to do, so it is not used.

Other facts this module relies on (checked against toxiproxy-server 2.12):

* A proxy created with ``listen`` port 0 gets a free port and keeps that port
  when it is disabled and enabled again.
* Disabling closes the proxy's listener and every open connection, so new
  connections are refused until it is enabled.
* Proxy updates use PATCH (2.6 and later); a server that answers 405 gets the
  older POST, which newer servers still accept but log as deprecated.
* The HTTP client ignores proxy environment variables (``trust_env=False``):
  every request goes to 127.0.0.1.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from harness.errors import CrashlabError, MissingBinaryError, SetupError
from harness.ports import LOOPBACK, on_free_port, port_open, wait_until
from harness.procs import ManagedProcess, ProcessRegistry

log = logging.getLogger(__name__)

BINARY = "toxiproxy-server"
HOW_TO_INSTALL = (
    "install Toxiproxy 2.x (https://github.com/Shopify/toxiproxy/releases, or "
    "`go install github.com/Shopify/toxiproxy/v2/cmd/server@latest` and link the binary "
    "as toxiproxy-server) and put it on PATH (or run scripts/setup.sh)"
)

_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
_METRIC = re.compile(r"^toxiproxy_proxy_(received|sent)_bytes_total\{([^}]*)\}\s+(\S+)$")
_LABEL = re.compile(r'(\w+)="([^"]*)"')
_STREAMS = ("upstream", "downstream")


class ToxiproxyError(CrashlabError):
    """A Toxiproxy API call failed (unreachable, timed out, or not 2xx)."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)


@dataclass(frozen=True)
class Toxic:
    """One toxic on a proxy, as Toxiproxy reports it."""

    name: str
    type: str
    stream: str
    toxicity: float
    attributes: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Toxic:
        return cls(
            name=str(data["name"]),
            type=str(data["type"]),
            stream=str(data.get("stream", "downstream")),
            toxicity=float(data.get("toxicity", 1.0)),
            attributes=dict(data.get("attributes") or {}),
        )


class _Api:
    """The REST API of one Toxiproxy server: timeouts, errors raised, thread-safe."""

    def __init__(self, port: int, timeout: float) -> None:
        self.base_url = f"http://{LOOPBACK}:{port}"
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, trust_env=False)
        self._lock = threading.Lock()
        self._update_method = "PATCH"
        self._closed = False

    def call(self, method: str, path: str, *, what: str, json: object = None) -> Any:
        """Send one request; the decoded JSON answer, or None when there is none."""
        with self._lock:
            if self._closed:
                raise ToxiproxyError(f"{what}: the toxiproxy-server at {self.base_url} was stopped")
            try:
                response = self._http.request(method, path, json=json)
            except httpx.HTTPError as exc:
                raise ToxiproxyError(
                    f"{what}: {method} {self.base_url}{path} failed: {exc!r}"
                ) from exc
        if not response.is_success:
            raise ToxiproxyError(
                f"{what}: {method} {path} answered HTTP {response.status_code}: "
                f"{_error_text(response)}",
                status=response.status_code,
            )
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            return response.text

    def update_proxy(self, name: str, body: Mapping[str, Any], *, what: str) -> Any:
        try:
            return self.call(self._update_method, f"/proxies/{name}", what=what, json=body)
        except ToxiproxyError as exc:
            if exc.status != 405 or self._update_method == "POST":
                raise
        self._update_method = "POST"  # a server from before PATCH existed
        return self.call("POST", f"/proxies/{name}", what=what, json=body)

    def byte_counts(self) -> dict[str, dict[str, tuple[int, int]]]:
        """``/metrics`` (the server runs with ``-proxy-metrics``): per proxy and direction,
        (received, sent) bytes of the connections that have closed."""
        text = self.call("GET", "/metrics", what="read toxiproxy metrics")
        counts: dict[str, dict[str, list[int]]] = {}
        for line in str(text or "").splitlines():
            found = _METRIC.match(line)
            if found is None:
                continue
            which, labels, value = found.groups()
            fields = dict(_LABEL.findall(labels))
            pair = counts.setdefault(fields.get("proxy", ""), {}).setdefault(
                fields.get("direction", ""), [0, 0])
            pair[0 if which == "received" else 1] += int(float(value))
        return {proxy: {direction: (pair[0], pair[1]) for direction, pair in by.items()}
                for proxy, by in counts.items()}

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._http.close()


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()
    if isinstance(body, dict) and "error" in body:
        return str(body["error"])
    return response.text.strip()


def _port_of(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


class Proxy:
    """A named TCP proxy from ``127.0.0.1:listen_port`` to ``127.0.0.1:upstream_port``."""

    def __init__(self, api: _Api, name: str, upstream_port: int, listen_port: int) -> None:
        self._api = api
        self.name = name
        self.upstream_port = upstream_port
        self.listen_port = listen_port

    def __repr__(self) -> str:
        return f"Proxy({self.name!r}, {self.listen_port} -> {self.upstream_port})"

    def url_for_redis(self, db: int = 0) -> str:
        """The Redis URL a worker uses to reach Redis through this proxy."""
        return f"redis://{LOOPBACK}:{self.listen_port}/{db}"

    # -- sever and restore ---------------------------------------------------

    def disable(self) -> None:
        """Sever: close every connection and refuse new ones until ``enable()``."""
        self._api.update_proxy(self.name, {"enabled": False}, what=f"disable proxy {self.name}")
        log.info("proxy %s disabled (port %d severed)", self.name, self.listen_port)

    def enable(self) -> None:
        """Listen again on the same port (fails if something else took it)."""
        self._api.update_proxy(self.name, {"enabled": True}, what=f"enable proxy {self.name}")
        log.info("proxy %s enabled", self.name)

    def is_enabled(self) -> bool:
        data = self._api.call("GET", f"/proxies/{self.name}", what=f"read proxy {self.name}")
        return bool(data["enabled"])

    # -- toxics --------------------------------------------------------------

    def add_toxic(
        self,
        toxic_type: str,
        attributes: Mapping[str, int],
        *,
        stream: str = "downstream",
        toxicity: float = 1.0,
        name: str | None = None,
    ) -> Toxic:
        """Add any Toxiproxy toxic; its name defaults to ``<type>_<stream>``.

        Adding a second toxic with the same name fails; remove the first.
        """
        if stream not in _STREAMS:
            raise ValueError(f"stream must be one of {_STREAMS}, not {stream!r}")
        if not 0.0 <= toxicity <= 1.0:
            raise ValueError(f"toxicity must be between 0 and 1, not {toxicity}")
        toxic_name = name or f"{toxic_type}_{stream}"
        body = {
            "name": toxic_name,
            "type": toxic_type,
            "stream": stream,
            "toxicity": toxicity,
            "attributes": dict(attributes),
        }
        data = self._api.call(
            "POST", f"/proxies/{self.name}/toxics", json=body,
            what=f"add toxic {toxic_name} to proxy {self.name}",
        )
        toxic = Toxic.from_api(data)
        log.info("proxy %s: toxic %s %s on %s", self.name, toxic.type,
                 dict(toxic.attributes), toxic.stream)
        return toxic

    def add_latency(self, ms: int, jitter: int = 0, *, stream: str = "downstream") -> Toxic:
        """Delay data on ``stream`` by ``ms`` (plus or minus ``jitter``) milliseconds."""
        return self.add_toxic("latency", {"latency": ms, "jitter": jitter}, stream=stream)

    def add_reset_peer(self, timeout_ms: int = 0, *, stream: str = "downstream") -> Toxic:
        """Reset connections (TCP RST) right away, or ``timeout_ms`` after data arrives."""
        return self.add_toxic("reset_peer", {"timeout": timeout_ms}, stream=stream)

    def add_timeout(self, ms: int, *, stream: str = "downstream") -> Toxic:
        """Black hole: drop all data, close the connection after ``ms`` (0: never)."""
        return self.add_toxic("timeout", {"timeout": ms}, stream=stream)

    def add_limit_data(self, nbytes: int, *, stream: str = "downstream",
                       name: str | None = None) -> Toxic:
        """Pass ``nbytes`` on each connection's ``stream``, drop the rest, close it.

        With 0 downstream, the first reply on every connection is dropped and the
        connection closed at once: the command was applied, its answer never comes.
        """
        return self.add_toxic("limit_data", {"bytes": nbytes}, stream=stream, name=name)

    def bytes_counted(self) -> dict[str, tuple[int, int]]:
        """Per direction (``upstream``, ``downstream``): the bytes this proxy received and
        sent on connections that have closed (Toxiproxy counts a connection when it ends).
        Received minus sent downstream is what a toxic dropped of Redis's replies."""
        return self._api.byte_counts().get(self.name, {})

    def toxics(self) -> list[Toxic]:
        data = self._api.call(
            "GET", f"/proxies/{self.name}/toxics", what=f"list toxics of proxy {self.name}"
        )
        return [Toxic.from_api(item) for item in data or []]

    def remove_toxic(self, name: str) -> None:
        self._api.call(
            "DELETE", f"/proxies/{self.name}/toxics/{name}",
            what=f"remove toxic {name} from proxy {self.name}",
        )

    def remove_toxics(self) -> None:
        """Remove every toxic from this proxy."""
        for toxic in self.toxics():
            self.remove_toxic(toxic.name)

    def heal(self) -> None:
        """Back to a clean pipe: enabled, no toxics."""
        self.enable()
        self.remove_toxics()
        log.info("proxy %s healed", self.name)

    def delete(self) -> None:
        self._api.call("DELETE", f"/proxies/{self.name}", what=f"delete proxy {self.name}")


class ToxiproxyServer:
    """One ``toxiproxy-server`` process with its API on a loopback port."""

    def __init__(
        self,
        workdir: Path,
        *,
        registry: ProcessRegistry | None = None,
        port: int | None = None,
        startup_timeout: float = 10.0,
        request_timeout: float = 5.0,
    ) -> None:
        self.workdir = workdir.resolve()
        self.registry = registry
        self.startup_timeout = startup_timeout
        self.request_timeout = request_timeout
        self._port = port
        self._proc: ManagedProcess | None = None
        self._api: _Api | None = None

    @property
    def api_port(self) -> int:
        if self._port is None or self._api is None:
            raise RuntimeError("toxiproxy-server has not been started")
        return self._port

    @property
    def api_url(self) -> str:
        return f"http://{LOOPBACK}:{self.api_port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "toxiproxy.log"

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError("toxiproxy-server was never started")
        return self._proc.pid

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.is_running()

    def start(self) -> ToxiproxyServer:
        """Start the server and wait until ``GET /version`` answers; returns ``self``."""
        if self.is_running():
            raise RuntimeError("toxiproxy-server is already running")
        binary = shutil.which(BINARY)
        if binary is None:
            raise MissingBinaryError(BINARY, HOW_TO_INSTALL)
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self._port is not None:
            self._launch(binary, self._port)
            return self
        on_free_port(lambda port: self._launch(binary, port), "toxiproxy-server")
        return self

    def version(self) -> str:
        data = self._require_api().call("GET", "/version", what="toxiproxy version")
        if isinstance(data, dict):  # 2.6 and later: {"version": "..."}
            return str(data.get("version", ""))
        return str(data).strip()

    def create_proxy(
        self, name: str, upstream_port: int, *, listen_port: int | None = None
    ) -> Proxy:
        """A new enabled proxy to ``127.0.0.1:upstream_port`` (free listen port by default)."""
        if not _NAME.match(name):
            raise ValueError(f"proxy name {name!r} must match {_NAME.pattern}")
        body = {
            "name": name,
            "listen": f"{LOOPBACK}:{listen_port or 0}",
            "upstream": f"{LOOPBACK}:{upstream_port}",
            "enabled": True,
        }
        data = self._require_api().call(
            "POST", "/proxies", json=body, what=f"create proxy {name}"
        )
        proxy = Proxy(self._require_api(), name, upstream_port, _port_of(data["listen"]))
        log.info("proxy %s: %d -> %d", name, proxy.listen_port, upstream_port)
        return proxy

    def proxy(self, name: str) -> Proxy:
        """The existing proxy called ``name``."""
        data = self._require_api().call("GET", f"/proxies/{name}", what=f"read proxy {name}")
        return Proxy(
            self._require_api(), name, _port_of(data["upstream"]), _port_of(data["listen"])
        )

    def reset(self) -> None:
        """Enable every proxy and remove every toxic."""
        self._require_api().call("POST", "/reset", what="reset toxiproxy")

    def stop(self, grace: float = 3.0) -> None:
        if self._api is not None:
            self._api.close()
        if self._proc is not None:
            was_running = self._proc.is_running()
            code = self._proc.stop(grace)
            if was_running:
                log.info("toxiproxy-server on port %s stopped (exit %s)", self._port, code)

    def log_tail(self, lines: int = 40) -> str:
        return "" if self._proc is None else self._proc.log_tail(lines)

    def __enter__(self) -> ToxiproxyServer:
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

    def _require_api(self) -> _Api:
        if self._api is None:
            raise RuntimeError("toxiproxy-server has not been started")
        return self._api

    def _launch(self, binary: str, port: int) -> None:
        if port_open(port):
            raise SetupError(f"cannot start toxiproxy-server: port {port} is already in use")
        env = dict(os.environ)
        env.setdefault("LOG_LEVEL", "info")  # its default level logs every lock it takes
        proc = ManagedProcess(
            f"toxiproxy-server:{port}",
            # -proxy-metrics: byte counts per proxy (``Proxy.bytes_counted``, lost replies)
            [binary, "-host", LOOPBACK, "-port", str(port), "-proxy-metrics"],
            log_path=self.log_path,
            env=env,
            cwd=self.workdir,
            registry=self.registry,
        )
        proc.start()
        api = _Api(port, self.request_timeout)

        def ready() -> bool:
            try:
                api.call("GET", "/version", what="toxiproxy health check")
            except ToxiproxyError:
                return False
            return True

        try:
            wait_until(
                ready,
                timeout=self.startup_timeout,
                what=f"toxiproxy-server on port {port}",
                alive=proc.is_running,
            )
        except (TimeoutError, RuntimeError) as exc:
            api.close()
            proc.stop(grace=1.0)
            raise SetupError(f"{exc}\n--- {self.log_path} ---\n{proc.log_tail()}") from None
        except BaseException:  # Ctrl-C while waiting: leave nothing running
            api.close()
            proc.stop(grace=1.0)
            raise
        self._proc, self._api, self._port = proc, api, port
        log.info("toxiproxy-server ready on port %d (pid %d)", port, proc.pid)
