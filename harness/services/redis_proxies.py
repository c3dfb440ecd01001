"""The Redis proxies of one run: one Toxiproxy proxy per worker and one for the API.

Every process of the target reaches the data Redis through a proxy of its own
*slot*: ``api`` for the worker's API, the worker's id (``w1``, ``w2``, ...) for a
worker. Every incarnation of a worker shares its slot's proxy, as a restarted
process on the same host shares that host's network. So a Redis fault can cut or
slow one worker while the others keep Redis (a partial partition: ``workers:
[w1]`` in a scenario), or every process at once (no ``workers``: the default, and
what a single shared proxy did before).

A slot's proxy is made the first time it is asked for. One made while a fault
holds every slot (a worker started during a cut of all) is made in the same
condition: disabled, or with the same toxics. So "all" means every process,
including those started during the fault, and healing all clears that too.

Thread-safe: timed faults act from the nemesis's threads while workers start.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from harness.services.toxiproxy import Proxy, ToxiproxyServer

log = logging.getLogger(__name__)

API_SLOT = "api"
"""The slot of the worker's API (a pack that enqueues straight to Redis has none)."""
SLOT_NAME = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
PREFIX = "redis-"  # a slot's proxy is called redis-<slot> on the Toxiproxy server


@dataclass(frozen=True)
class _ToxicSpec:
    type: str
    attributes: tuple[tuple[str, int], ...]
    stream: str


def slot_of(worker_id: str) -> str:
    """The slot of a worker incarnation: ``w1.3`` is ``w1``'s third start."""
    return worker_id.split(".")[0]


def worker_slots(names: Sequence[str]) -> list[str]:
    """The workers among a fault's ``workers`` (all but the API)."""
    return [name for name in names if name != API_SLOT]


def check_slots(names: Sequence[str], workers: int) -> str | None:
    """Why ``names`` cannot be a fault's ``workers`` in a scenario of ``workers`` workers
    (named ``w1`` .. ``wN`` by the environment), or None."""
    known = [API_SLOT, *(f"w{i}" for i in range(1, workers + 1))]
    unknown = [name for name in names if name not in known]
    if unknown:
        return (f"no worker {', '.join(map(repr, unknown))} in this scenario; name "
                f"{', '.join(known)}")
    if len(set(names)) != len(names):
        return "a worker is named twice"
    return None


class RedisProxies:
    """The proxies in front of one Redis, by slot; ``names`` None means every slot."""

    def __init__(self, server: ToxiproxyServer, upstream_port: int) -> None:
        self._server = server
        self._upstream = upstream_port
        self._proxies: dict[str, Proxy] = {}
        self._lock = threading.RLock()
        # what a fault on all slots holds, for the slots made while it lasts
        self._all_disabled = False
        self._all_toxics: list[_ToxicSpec] = []

    def slot(self, name: str) -> Proxy:
        """The proxy of slot ``name``, made (in the condition of all) if it is new."""
        if not SLOT_NAME.match(name):
            raise ValueError(f"proxy slot {name!r} must match {SLOT_NAME.pattern}")
        with self._lock:
            proxy = self._proxies.get(name)
            if proxy is None:
                proxy = self._server.create_proxy(PREFIX + name, self._upstream)
                self._proxies[name] = proxy
                for toxic in self._all_toxics:
                    proxy.add_toxic(toxic.type, dict(toxic.attributes), stream=toxic.stream)
                if self._all_disabled:
                    proxy.disable()
            return proxy

    @property
    def slots(self) -> list[str]:
        """Every slot that has a proxy, in the order they were made."""
        with self._lock:
            return list(self._proxies)

    def select(self, names: Sequence[str] | None) -> Mapping[str, Proxy]:
        """The proxies of ``names`` (made if new), or of every slot so far (None)."""
        with self._lock:
            if names is None:
                return dict(self._proxies)
            return {name: self.slot(name) for name in names}

    # -- faults ----------------------------------------------------------------

    def disable(self, names: Sequence[str] | None = None) -> list[str]:
        """Sever ``names`` (default: every slot, and the ones made until ``enable``);
        returns the slots cut."""
        with self._lock:
            if names is None:
                self._all_disabled = True
            chosen = self.select(names)
            for proxy in chosen.values():
                proxy.disable()
            return list(chosen)

    def enable(self, names: Sequence[str] | None = None) -> None:
        with self._lock:
            if names is None:
                self._all_disabled = False
            for proxy in self.select(names).values():
                proxy.enable()

    def add_toxic(self, toxic_type: str, attributes: Mapping[str, int], *,
                  stream: str = "downstream", names: Sequence[str] | None = None) -> list[str]:
        """Add a toxic on ``names`` (default: every slot, and the ones made until
        ``remove_toxics``); returns the slots it is on."""
        with self._lock:
            if names is None:
                self._all_toxics.append(_ToxicSpec(toxic_type, tuple(attributes.items()),
                                                   stream))
            chosen = self.select(names)
            for proxy in chosen.values():
                proxy.add_toxic(toxic_type, attributes, stream=stream)
            return list(chosen)

    def add_latency(self, ms: int, jitter: int = 0, *,
                    names: Sequence[str] | None = None) -> list[str]:
        return self.add_toxic("latency", {"latency": ms, "jitter": jitter}, names=names)

    def add_reset_peer(self, timeout_ms: int = 0, *,
                       names: Sequence[str] | None = None) -> list[str]:
        return self.add_toxic("reset_peer", {"timeout": timeout_ms}, names=names)

    def add_timeout(self, ms: int, *, names: Sequence[str] | None = None) -> list[str]:
        return self.add_toxic("timeout", {"timeout": ms}, names=names)

    def remove_toxics(self, names: Sequence[str] | None = None) -> None:
        with self._lock:
            if names is None:
                self._all_toxics.clear()
            for proxy in self.select(names).values():
                proxy.remove_toxics()

    def heal(self) -> None:
        """Every slot enabled and without toxics."""
        with self._lock:
            self._all_disabled = False
            self._all_toxics.clear()
            for proxy in self._proxies.values():
                proxy.heal()

    def is_enabled(self) -> bool:
        """Whether no slot is cut."""
        with self._lock:
            return not self._all_disabled and all(p.is_enabled() for p in self._proxies.values())

    def describe(self) -> str:
        """``api :PORT, w1 :PORT, ...`` (where to point redis-cli to go through a slot)."""
        with self._lock:
            return ", ".join(f"{name} :{proxy.listen_port}"
                             for name, proxy in self._proxies.items())
