"""Where an exploration keeps its failing examples, so the next one replays them first.

By default a folder in the state dir (``.crashlab/hypothesis``,
Hypothesis's ``DirectoryBasedExampleDatabase``): every exploration on this
machine, the explorers of ``--jobs N`` included, shares it. With
``--example-db redis://host:port/db`` it is that Redis database
(``hypothesis.extra.redis.RedisExampleDatabase``): explorers on several
machines that name the same one replay a failure found on any of them
first. Either way the keys are kept apart by target, scenario and worker
copy (``Prefixed``), so one database serves every exploration.

The example database is never the data Redis of a run (each session starts
its own, on its own port); any Redis the explorers can reach will do, and
Hypothesis's entries expire after eight days unless seen again.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit

import redis
from hypothesis.database import DirectoryBasedExampleDatabase, ExampleDatabase

from harness.errors import SetupError

SCHEMES = ("redis", "rediss", "unix")


class Prefixed(ExampleDatabase):
    """One example database shared by every exploration, keys kept apart by a prefix."""

    def __init__(self, inner: ExampleDatabase, prefix: bytes) -> None:
        super().__init__()
        self.inner, self.prefix = inner, prefix

    def save(self, key: bytes, value: bytes) -> None:
        self.inner.save(self.prefix + key, value)

    def fetch(self, key: bytes) -> Iterable[bytes]:
        return self.inner.fetch(self.prefix + key)

    def delete(self, key: bytes, value: bytes) -> None:
        self.inner.delete(self.prefix + key, value)


def shown(url: str) -> str:
    """``url`` with its password, if any, left out (for messages and logs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def check_url(url: str) -> str:
    """``url`` if it names a Redis database (``redis://``, ``rediss://``, ``unix://``);
    ``SetupError`` naming ``--example-db`` otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES or not (parts.hostname or parts.path):
        raise SetupError(f"--example-db {shown(url)!r} is not a Redis URL; give "
                         "redis://host:port/db (or rediss://, unix://)")
    return url


def open_database(url: str | None, state_dir: Path) -> ExampleDatabase:
    """The example database at ``url`` (a Redis URL), else the state dir's folder.

    ``SetupError`` names ``--example-db`` when the URL is not one, or when no
    Redis answers there.
    """
    if url is None:
        return DirectoryBasedExampleDatabase(state_dir / "hypothesis")
    from hypothesis.extra.redis import RedisExampleDatabase

    client = redis.Redis.from_url(check_url(url), socket_connect_timeout=5)
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:
        raise SetupError(f"--example-db {shown(url)}: no Redis answers there "
                         f"({type(exc).__name__})") from exc
    return RedisExampleDatabase(client)
