"""S3Server: a real moto server that boto3 reaches only through its loopback endpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.services.s3 import S3Server

PART = 5 * 1024 * 1024  # S3's smallest part size for all parts but the last


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    s3 = S3Server(tmp_path_factory.mktemp("moto"))
    try:
        s3.start()
        yield s3
    finally:
        s3.stop()


@pytest.fixture
def s3(server: S3Server) -> Iterator[Any]:
    server.reset()
    client = server.client()
    yield client
    client.close()


def test_endpoint_is_on_loopback_and_the_server_is_alive(server: S3Server) -> None:
    assert server.endpoint_url == f"http://127.0.0.1:{server.port}"
    assert server.is_running()


def test_multipart_upload_is_listed_and_reads_back_whole(s3: Any) -> None:
    s3.create_bucket(Bucket="results")
    first, last = b"a" * PART, b"tail"
    upload = s3.create_multipart_upload(Bucket="results", Key="job-1/transcript.txt")
    parts = []
    for number, body in enumerate((first, last), start=1):
        answer = s3.upload_part(Bucket="results", Key="job-1/transcript.txt", Body=body,
                                UploadId=upload["UploadId"], PartNumber=number)
        parts.append({"ETag": answer["ETag"], "PartNumber": number})
    s3.complete_multipart_upload(Bucket="results", Key="job-1/transcript.txt",
                                 UploadId=upload["UploadId"],
                                 MultipartUpload={"Parts": parts})

    listed = s3.list_objects_v2(Bucket="results")["Contents"]

    assert [(o["Key"], o["Size"]) for o in listed] == [("job-1/transcript.txt", PART + 4)]
    body = s3.get_object(Bucket="results", Key="job-1/transcript.txt")["Body"].read()
    assert body == first + last


def test_unfinished_multipart_upload_creates_no_object(s3: Any) -> None:
    s3.create_bucket(Bucket="results")
    upload = s3.create_multipart_upload(Bucket="results", Key="half")
    s3.upload_part(Bucket="results", Key="half", Body=b"x", UploadId=upload["UploadId"],
                   PartNumber=1)

    assert s3.list_objects_v2(Bucket="results").get("KeyCount") == 0
    uploads = s3.list_multipart_uploads(Bucket="results")["Uploads"]
    assert [u["Key"] for u in uploads] == ["half"]


def test_reset_deletes_every_bucket(server: S3Server, s3: Any) -> None:
    s3.create_bucket(Bucket="doomed")

    server.reset()

    assert s3.list_buckets()["Buckets"] == []


def test_client_ignores_profiles_endpoints_and_proxies_from_the_environment(
    server: S3Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AWS_PROFILE", "no-such-profile")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "missing-config"))
    client = server.client()

    client.create_bucket(Bucket="isolated")

    assert [b["Name"] for b in client.list_buckets()["Buckets"]] == ["isolated"]
    client.close()


def test_client_env_lets_a_child_process_use_this_server_only(
    server: S3Server, s3: Any
) -> None:
    s3.create_bucket(Bucket="from-parent")
    env = server.client_env({"PATH": "/usr/bin:/bin", "AWS_PROFILE": "prod",
                             "HTTPS_PROXY": "http://127.0.0.1:9"})
    script = ("import boto3, json; buckets = boto3.client('s3').list_buckets()['Buckets']; "
              "print(json.dumps([b['Name'] for b in buckets]))")

    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=60)

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == ["from-parent"]
    assert "AWS_PROFILE" not in env and "HTTPS_PROXY" not in env
    assert env["AWS_EC2_METADATA_DISABLED"] == "true"
    assert env["AWS_ENDPOINT_URL_S3"] == server.endpoint_url


def test_stop_ends_the_moto_process(tmp_path: Path) -> None:
    s3 = S3Server(tmp_path / "moto")
    s3.start()
    pid = s3.pid

    s3.stop()

    assert not s3.is_running()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
