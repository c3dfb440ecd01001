"""ObjectStore: an S3 that is busy, failing or out of reach delays a call, up to a bound.

Real moto behind the harness's real S3 gate, which answers S3's own 503
SlowDown / 500 InternalError; botocore is left one try per call, so every try
past the first is the worker's own.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from harness.ports import free_port
from harness.services.s3 import S3Server, isolated_aws_env
from harness.services.s3_gate import S3Gate
from system_under_test.config import Settings
from system_under_test.errors import S3Error
from system_under_test.objectstore import ObjectStore


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    s3 = S3Server(tmp_path_factory.mktemp("moto"), part_min_size=1)
    try:
        s3.start()
        yield s3
    finally:
        s3.stop()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in isolated_aws_env({}).items():  # dummy credentials, no real AWS
        monkeypatch.setenv(name, value)


@pytest.fixture
def gate(server: S3Server, aws_env: None) -> Iterator[S3Gate]:
    server.reset()
    client = server.client()
    client.create_bucket(Bucket="bkt")
    client.close()
    gate = S3Gate(server.port).start()
    try:
        yield gate
    finally:
        gate.stop()


def store(url: str, outage_s: float) -> ObjectStore:
    return ObjectStore(Settings(s3_endpoint_url=url, s3_attempts=1, s3_outage_s=outage_s,
                                s3_timeout_s=5))


def statuses(gate: S3Gate) -> list[tuple[str, int]]:
    return [(c["operation"], c["status"]) for c in gate.calls()]


def test_a_part_refused_past_botocores_tries_is_sent_again_until_s3_takes_it(
    gate: S3Gate,
) -> None:
    objects = store(gate.url, outage_s=30)

    async def upload() -> Any:
        upload_id = await objects.create("bkt", "k", "token")
        gate.set_errors(503, count=3, operations=frozenset({"UploadPart"}))
        return await objects.upload_part("bkt", "k", upload_id, 1, b"part")

    assert asyncio.run(upload()).startswith('"')
    assert statuses(gate)[1:] == [("UploadPart", 503)] * 3 + [("UploadPart", 200)]


def test_an_outage_longer_than_the_bound_fails_the_call_with_s3s_code(gate: S3Gate) -> None:
    objects = store(gate.url, outage_s=0.5)
    gate.set_errors(500, duration_s=30)
    with pytest.raises(S3Error, match="InternalError") as caught:
        asyncio.run(objects.put_json("bkt", "k.json", {"a": 1}))
    assert caught.value.code == "InternalError"
    tries = len(gate.calls())
    assert 2 <= tries <= 3  # 0.2 s, then 0.4 s: the next wait would pass the bound


def test_an_answer_that_is_not_transient_is_not_tried_again(gate: S3Gate) -> None:
    objects = store(gate.url, outage_s=30)
    with pytest.raises(S3Error, match="NoSuchBucket"):
        asyncio.run(objects.put_json("no-such-bucket", "k.json", {}))
    assert statuses(gate) == [("PutObject", 404)]


def test_an_unreachable_s3_is_tried_again_until_the_bound(
    aws_env: None, caplog: pytest.LogCaptureFixture
) -> None:
    objects = store(f"http://127.0.0.1:{free_port()}", outage_s=0.5)  # nothing listens
    with caplog.at_level(logging.WARNING, logger="system_under_test.objectstore"), \
            pytest.raises(S3Error, match="EndpointConnectionError"):
        asyncio.run(objects.head("bkt", "k"))
    again = [r for r in caplog.records if "trying again" in r.getMessage()]
    assert len(again) in (1, 2)
