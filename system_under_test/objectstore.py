"""S3 through ``boto3``, behind one adapter; every call runs in a thread.

boto3 is blocking, so each method hands its call to ``asyncio.to_thread``.
The endpoint is configurable (``CRASHLAB_S3_ENDPOINT_URL``: a moto server in
demos and tests, MinIO, or empty for AWS itself); credentials come from the
usual AWS chain (environment, profile, instance role). botocore retries
throttling, 5xx and dropped connections itself (``CRASHLAB_S3_ATTEMPTS`` tries
in all, with its backoff); a call still failing that way after them, S3 busy
(``503 SlowDown``), failing (``500``) or out of reach, is tried again with a
backoff of its own for up to ``CRASHLAB_S3_OUTAGE_S`` (the lease is kept by
the heartbeat meanwhile), so an outage of S3 shorter than that delays an
upload instead of failing it. Every S3 call the worker makes is safe to
repeat: a part sent again under its number replaces itself with the same
bytes, and the others are reads, an idempotent completion (settled by
``HEAD``), an abort, or the same metadata object again.

The answers a resume depends on are turned into values, not exceptions:
``NoSuchUpload`` (the upload was completed or aborted) is ``None`` from
``list_parts`` and ``complete``, and ``False`` from ``abort``; a missing
object is ``None`` from ``head``. Anything else raises ``S3Error`` naming
the operation, the object and S3's error code.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import boto3
import botocore.config
import botocore.exceptions

from system_under_test.config import Settings
from system_under_test.errors import S3Error

log = logging.getLogger(__name__)

TOKEN_HEADER = "crashlab-token"  # user metadata on the object: x-amz-meta-crashlab-token
_NO_UPLOAD = "NoSuchUpload"
_NO_OBJECT = ("404", "NoSuchKey", "NotFound")
# S3 error codes that say "not now" rather than "no": the request may succeed later
_TRANSIENT_CODES = frozenset({"SlowDown", "InternalError", "ServiceUnavailable",
                              "RequestTimeout", "Throttling", "ThrottlingException",
                              "RequestThrottled", "503", "500", "502", "504"})
RETRY_FIRST_S = 0.2  # the first wait before a call is tried again; doubled each time
RETRY_MAX_S = 5.0
T = TypeVar("T")


def _transient(exc: Exception) -> bool:
    """Whether a failed S3 call may succeed if tried again later: S3 busy or failing,
    or the connection to it refused, dropped or timed out."""
    if isinstance(exc, botocore.exceptions.ClientError):
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        return status >= 500 or _code(exc) in _TRANSIENT_CODES
    return isinstance(exc, (botocore.exceptions.ConnectionError,
                            botocore.exceptions.HTTPClientError))


@dataclass(frozen=True)
class ObjectInfo:
    size: int
    etag: str
    token: str | None  # the token the upload was created with, if it is ours


def _code(exc: botocore.exceptions.ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _error(operation: str, target: str, exc: Exception) -> S3Error:
    if isinstance(exc, botocore.exceptions.ClientError):
        message = str(exc.response.get("Error", {}).get("Message", ""))
        return S3Error(operation, target, _code(exc), message)
    return S3Error(operation, target, type(exc).__name__, str(exc))


class ObjectStore:
    def __init__(self, settings: Settings, client: Any = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.outage_s = settings.s3_outage_s
        self.clock = clock
        if client is not None:  # made elsewhere (a test's client for its own S3 server)
            self.client: Any = client
            return
        endpoint = settings.s3_endpoint_url or None
        config = botocore.config.Config(
            connect_timeout=settings.s3_timeout_s, read_timeout=settings.s3_timeout_s,
            # total_max_attempts counts the first try (max_attempts would not)
            retries={"total_max_attempts": settings.s3_attempts, "mode": "standard"},
            # a custom endpoint (moto, MinIO) serves buckets as paths, AWS as host names
            s3={"addressing_style": "path" if endpoint else "auto"},
        )
        session = boto3.session.Session(region_name=settings.s3_region)
        self.client = session.client("s3", endpoint_url=endpoint, config=config)

    def close(self) -> None:
        self.client.close()

    async def _call(self, operation: str, target: str, call: Callable[[], T]) -> T:
        """``call`` in a thread; a transient failure is tried again for up to ``outage_s``."""
        started, delay = self.clock(), RETRY_FIRST_S
        while True:
            try:
                return await asyncio.to_thread(call)
            except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
                error = _error(operation, target, exc)
                waited = self.clock() - started
                if not _transient(exc) or waited + delay > self.outage_s:
                    raise error from exc
                log.warning("%s; trying again in %.1fs (S3 out for %.1fs of at most %.0fs)",
                            error, delay, waited, self.outage_s)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)

    async def create(self, bucket: str, key: str, token: str) -> str:
        """Start a multipart upload whose object will carry ``token``; returns its id."""
        answer = await self._call("CreateMultipartUpload", f"s3://{bucket}/{key}", lambda:
                                  self.client.create_multipart_upload(
                                      Bucket=bucket, Key=key, Metadata={TOKEN_HEADER: token}))
        return str(answer["UploadId"])

    async def upload_part(self, bucket: str, key: str, upload_id: str, number: int,
                          body: bytes) -> str:
        """Send one part; returns its ETag. The same number again replaces it."""
        answer = await self._call("UploadPart", f"s3://{bucket}/{key} part {number}", lambda:
                                  self.client.upload_part(Bucket=bucket, Key=key,
                                                          UploadId=upload_id,
                                                          PartNumber=number, Body=body))
        return str(answer["ETag"])

    async def list_parts(self, bucket: str, key: str,
                         upload_id: str) -> dict[int, tuple[str, int]] | None:
        """Part number -> (ETag, size) of every part S3 holds; None if the upload is gone."""
        def fetch() -> dict[int, tuple[str, int]] | None:
            parts: dict[int, tuple[str, int]] = {}
            marker = 0
            while True:
                try:
                    page = self.client.list_parts(Bucket=bucket, Key=key, UploadId=upload_id,
                                                  PartNumberMarker=marker)
                except botocore.exceptions.ClientError as exc:
                    if _code(exc) == _NO_UPLOAD:
                        return None
                    raise
                for part in page.get("Parts", []):
                    parts[int(part["PartNumber"])] = (str(part["ETag"]), int(part["Size"]))
                if not page.get("IsTruncated"):
                    return parts
                marker = int(page["NextPartNumberMarker"])

        return await self._call("ListParts", f"s3://{bucket}/{key}", fetch)

    async def complete(self, bucket: str, key: str, upload_id: str,
                       parts: list[tuple[int, str]]) -> str | None:
        """Assemble the object from ``parts`` (number, ETag); its ETag, or None if the
        upload is gone (completed before, or aborted: ``head`` tells which)."""
        def send() -> str | None:
            try:
                answer = self.client.complete_multipart_upload(
                    Bucket=bucket, Key=key, UploadId=upload_id,
                    MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in parts]})
            except botocore.exceptions.ClientError as exc:
                if _code(exc) == _NO_UPLOAD:
                    return None
                raise
            return str(answer["ETag"])

        return await self._call("CompleteMultipartUpload", f"s3://{bucket}/{key}", send)

    async def abort(self, bucket: str, key: str, upload_id: str) -> bool:
        """Abort an upload; False if it was already gone."""
        def send() -> bool:
            try:
                self.client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
            except botocore.exceptions.ClientError as exc:
                if _code(exc) == _NO_UPLOAD:
                    return False
                raise
            return True

        return await self._call("AbortMultipartUpload", f"s3://{bucket}/{key}", send)

    async def pending_uploads(self, bucket: str, key: str) -> list[str]:
        """Ids of the multipart uploads in progress for exactly this key."""
        def fetch() -> list[str]:
            found: list[str] = []
            pages = self.client.get_paginator("list_multipart_uploads").paginate(
                Bucket=bucket, Prefix=key)
            for page in pages:
                found += [str(u["UploadId"]) for u in page.get("Uploads", []) if u["Key"] == key]
            return found

        return await self._call("ListMultipartUploads", f"s3://{bucket}/{key}", fetch)

    async def head(self, bucket: str, key: str) -> ObjectInfo | None:
        def fetch() -> ObjectInfo | None:
            try:
                answer = self.client.head_object(Bucket=bucket, Key=key)
            except botocore.exceptions.ClientError as exc:
                if _code(exc) in _NO_OBJECT:
                    return None
                raise
            metadata = answer.get("Metadata") or {}
            return ObjectInfo(int(answer["ContentLength"]), str(answer["ETag"]),
                              metadata.get(TOKEN_HEADER))

        return await self._call("HeadObject", f"s3://{bucket}/{key}", fetch)

    async def put_json(self, bucket: str, key: str, data: dict[str, Any]) -> None:
        body = json.dumps(data, indent=2, sort_keys=True).encode()
        await self._call("PutObject", f"s3://{bucket}/{key}", lambda: self.client.put_object(
            Bucket=bucket, Key=key, Body=body, ContentType="application/json"))
