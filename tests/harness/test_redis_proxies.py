"""One proxy per worker: cut one worker's Redis while the others keep theirs, or all."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from harness.services.redis_proxies import RedisProxies, slot_of
from harness.services.redis_server import RedisServer
from harness.services.toxiproxy import ToxiproxyServer


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[tuple[RedisServer, ToxiproxyServer]]:
    upstream = RedisServer(tmp_path_factory.mktemp("redis")).start()
    toxiproxy = ToxiproxyServer(tmp_path_factory.mktemp("toxiproxy")).start()
    try:
        yield upstream, toxiproxy
    finally:
        toxiproxy.stop()
        upstream.stop()


@pytest.fixture
def proxies(servers: tuple[RedisServer, ToxiproxyServer]) -> Iterator[RedisProxies]:
    upstream, toxiproxy = servers
    toxiproxy.reset()
    made = RedisProxies(toxiproxy, upstream.port)
    yield made
    for slot in made.slots:
        made.slot(slot).delete()


def reaches_redis(proxies: RedisProxies, slot: str) -> bool:
    client = redis.Redis.from_url(proxies.slot(slot).url_for_redis(), socket_timeout=1.0,
                                  socket_connect_timeout=1.0, retry=Retry(NoBackoff(), 0))
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False
    finally:
        client.close()


def test_each_slot_has_its_own_proxy_shared_by_its_incarnations(proxies: RedisProxies) -> None:
    w1, w2 = proxies.slot("w1"), proxies.slot("w2")
    assert w1.listen_port != w2.listen_port
    assert proxies.slot(slot_of("w1.3")) is w1
    assert proxies.slots == ["w1", "w2"]


def test_cutting_one_worker_leaves_the_others_their_redis(proxies: RedisProxies) -> None:
    proxies.slot("api")
    proxies.slot("w2")

    assert proxies.disable(["w1"]) == ["w1"]

    assert not reaches_redis(proxies, "w1")
    assert reaches_redis(proxies, "w2") and reaches_redis(proxies, "api")
    assert not proxies.is_enabled()
    proxies.enable(["w1"])
    assert reaches_redis(proxies, "w1")


def test_a_cut_of_all_holds_the_workers_started_during_it(proxies: RedisProxies) -> None:
    proxies.slot("w1")

    assert proxies.disable() == ["w1"]
    assert not reaches_redis(proxies, "w2")  # made during the cut: cut too

    proxies.enable()
    assert reaches_redis(proxies, "w1") and reaches_redis(proxies, "w2")
    assert proxies.is_enabled()


def test_a_toxic_on_all_is_put_on_later_slots_until_removed(proxies: RedisProxies) -> None:
    proxies.add_latency(50)
    assert [t.type for t in proxies.slot("w3").toxics()] == ["latency"]

    proxies.remove_toxics()
    assert proxies.slot("w3").toxics() == []
    assert proxies.slot("w4").toxics() == []


def test_heal_clears_every_slot_and_what_all_held(proxies: RedisProxies) -> None:
    proxies.disable()
    proxies.add_reset_peer(names=["w1"])

    proxies.heal()

    assert proxies.is_enabled()
    assert reaches_redis(proxies, "w1") and reaches_redis(proxies, "w9")
    assert proxies.slot("w1").toxics() == []


def test_a_slot_name_toxiproxy_cannot_carry_is_refused(proxies: RedisProxies) -> None:
    with pytest.raises(ValueError, match="must match"):
        proxies.slot("w 1")
