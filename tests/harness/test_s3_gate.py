"""S3Gate: a real HTTP proxy in front of a real moto server; S3's errors on demand."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.services.s3 import S3Server
from harness.services.s3_gate import S3Gate, operation


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    s3 = S3Server(tmp_path_factory.mktemp("moto"), part_min_size=1)
    try:
        s3.start()
        yield s3
    finally:
        s3.stop()


@pytest.fixture
def gate(server: S3Server) -> Iterator[S3Gate]:
    server.reset()
    gate = S3Gate(server.port).start()
    try:
        yield gate
    finally:
        gate.stop()


def client_through(server: S3Server, gate: S3Gate, attempts: int = 1) -> Any:
    """A boto3 client of ``server`` that goes through ``gate``, with ``attempts`` tries."""
    import boto3.session
    import botocore.config

    config = botocore.config.Config(retries={"total_max_attempts": attempts, "mode": "standard"},
                                    s3={"addressing_style": "path"}, proxies={})
    session = boto3.session.Session(aws_access_key_id="testing",
                                    aws_secret_access_key="testing", region_name="us-east-1")
    return session.client("s3", endpoint_url=gate.url, config=config)


def test_requests_are_forwarded_and_logged_with_their_operation(
    server: S3Server, gate: S3Gate
) -> None:
    s3 = client_through(server, gate)
    s3.create_bucket(Bucket="bkt")
    upload = s3.create_multipart_upload(Bucket="bkt", Key="k")["UploadId"]
    etag = s3.upload_part(Bucket="bkt", Key="k", UploadId=upload, PartNumber=1,
                          Body=b"x" * 1000)["ETag"]
    s3.complete_multipart_upload(Bucket="bkt", Key="k", UploadId=upload,
                                 MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
    head = s3.head_object(Bucket="bkt", Key="k")
    assert head["ContentLength"] == 1000
    assert s3.get_object(Bucket="bkt", Key="k")["Body"].read() == b"x" * 1000
    calls = [(c["operation"], c["part"], c["status"], c["refused"]) for c in gate.calls()]
    assert calls == [("CreateBucket", None, 200, False),
                     ("CreateMultipartUpload", None, 200, False),
                     ("UploadPart", 1, 200, False),
                     ("CompleteMultipartUpload", None, 200, False),
                     ("HeadObject", None, 200, False),
                     ("GetObject", None, 200, False)]


def test_slowdown_refuses_the_next_parts_with_s3s_error_and_stores_nothing(
    server: S3Server, gate: S3Gate
) -> None:
    import botocore.exceptions

    s3 = client_through(server, gate)
    s3.create_bucket(Bucket="bkt")
    upload = s3.create_multipart_upload(Bucket="bkt", Key="k")["UploadId"]
    gate.set_errors(503, count=2, operations=frozenset({"UploadPart"}))
    for _ in range(2):
        with pytest.raises(botocore.exceptions.ClientError) as caught:
            s3.upload_part(Bucket="bkt", Key="k", UploadId=upload, PartNumber=1, Body=b"y")
        error = caught.value.response["Error"]
        assert (error["Code"], caught.value.response["ResponseMetadata"]["HTTPStatusCode"]) == (
            "SlowDown", 503)
    # not an UploadPart: passes while the rule still has parts to refuse
    assert s3.list_parts(Bucket="bkt", Key="k", UploadId=upload).get("Parts", []) == []
    s3.upload_part(Bucket="bkt", Key="k", UploadId=upload, PartNumber=1, Body=b"y")
    assert gate.fired() == 2 and gate.clear() == 2
    refused = [c for c in gate.calls() if c["refused"]]
    assert [(c["operation"], c["part"], c["status"]) for c in refused] == [
        ("UploadPart", 1, 503)] * 2


def test_botocore_retries_an_internal_error_and_the_retry_goes_through(
    server: S3Server, gate: S3Gate
) -> None:
    s3 = client_through(server, gate, attempts=3)
    s3.create_bucket(Bucket="bkt")
    gate.set_errors(500, count=1)
    s3.put_object(Bucket="bkt", Key="k", Body=b"z")
    statuses = [(c["operation"], c["status"]) for c in gate.calls()][1:]
    assert statuses == [("PutObject", 500), ("PutObject", 200)]


def test_a_rule_with_a_duration_refuses_until_it_ends(server: S3Server, gate: S3Gate) -> None:
    import botocore.exceptions

    s3 = client_through(server, gate)
    s3.create_bucket(Bucket="bkt")
    gate.set_errors(503, duration_s=0.3)
    with pytest.raises(botocore.exceptions.ClientError):
        s3.put_object(Bucket="bkt", Key="k", Body=b"z")
    time.sleep(0.35)
    s3.put_object(Bucket="bkt", Key="k", Body=b"z")
    assert gate.fired() == 1


def test_only_s3s_answered_statuses_and_a_limit_are_accepted(gate: S3Gate) -> None:
    with pytest.raises(ValueError, match="answers"):
        gate.set_errors(404, count=1)
    with pytest.raises(ValueError, match="count or a duration"):
        gate.set_errors(503)


@pytest.mark.parametrize(("method", "path", "expected"), [
    ("PUT", "/b/k?partNumber=3&uploadId=u", ("UploadPart", 3)),
    ("POST", "/b/k?uploads", ("CreateMultipartUpload", None)),
    ("POST", "/b/k?uploadId=u", ("CompleteMultipartUpload", None)),
    ("DELETE", "/b/k?uploadId=u", ("AbortMultipartUpload", None)),
    ("GET", "/b/k?uploadId=u&part-number-marker=0", ("ListParts", None)),
    ("GET", "/b?uploads&prefix=k", ("ListMultipartUploads", None)),
    ("PUT", "/b/k.metadata.json", ("PutObject", None)),
    ("HEAD", "/b/k", ("HeadObject", None)),
])
def test_operation_names_the_s3_call(method: str, path: str,
                                     expected: tuple[str, int | None]) -> None:
    assert operation(method, path) == expected


def test_stop_closes_the_port(tmp_path: Path, server: S3Server) -> None:
    import socket

    gate = S3Gate(server.port).start()
    port = gate.port
    gate.stop()
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0
