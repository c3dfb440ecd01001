"""Worker and API configuration, read from the environment and validated.

Every setting is an environment variable; ``python -m system_under_test
--help`` lists them. A bad value stops the process at start with one line per
problem naming the variable, the value and what is expected.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "CRASHLAB_"


class ConfigError(Exception):
    """The environment holds an invalid setting; the message names each one."""


def _default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class Settings(BaseSettings):
    """All settings; the field descriptions are the documentation (see ``describe``)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    redis_url: str = Field("redis://127.0.0.1:6379/0", description="data Redis URL")
    data_dir: Path = Field(Path("./data"), description="uploads and chunk files")
    openai_base_url: str = Field(
        "http://127.0.0.1:8000/v1",
        validation_alias=AliasChoices("OPENAI_BASE_URL", "CRASHLAB_OPENAI_BASE_URL"),
        description="OpenAI-compatible endpoint (OPENAI_BASE_URL)",
    )
    openai_api_key: SecretStr = Field(
        SecretStr("crashlab-local"),
        validation_alias=AliasChoices("OPENAI_API_KEY", "CRASHLAB_OPENAI_API_KEY"),
        description="API key for that endpoint (OPENAI_API_KEY); never logged",
    )
    transcription_model: str = Field("whisper-1", description="model name sent with each chunk")
    lease_ttl_ms: int = Field(5000, ge=200, description="lease time-to-live of a claimed job")
    heartbeat_ms: int = Field(1000, ge=20, description="lease renewal interval")
    chunk_seconds: float = Field(2.0, gt=0, le=600, description="length of each media chunk")
    concurrency: int = Field(1, ge=1, le=64, description="jobs one worker processes at once")
    chunk_concurrency: int = Field(2, ge=1, le=64, description="chunk requests in flight per job")
    max_retries: int = Field(3, ge=0, le=100, description="lost workers a job survives")
    max_upload_bytes: int = Field(50 * 1024 * 1024, ge=1, description="largest accepted upload")
    request_timeout_s: float = Field(30.0, gt=0, description="timeout of one transcription call")
    transcribe_attempts: int = Field(6, ge=1, description="tries per chunk on 429/5xx/timeouts")
    poll_interval_ms: int = Field(100, ge=5, description="idle wait between queue polls")
    job_timeout_s: float = Field(0, ge=0, le=7 * 86400,
                                 description="default job timeout at submit (0: none)")
    timeout_scan_ms: int = Field(250, ge=10, description="how often a worker times out jobs")
    metrics_port: int = Field(0, ge=0, le=65535,
                              description="worker Prometheus metrics on 127.0.0.1 (0: off)")
    recovery_machinery: bool = Field(
        True, description="benchmark baseline only: false runs a bare worker with no leases, "
        "checkpoints or events, so a crash loses its job (system_under_test.bare)")
    failpoints: str = Field(
        "", description='failpoints armed at start, e.g. "chunk.committed=2*off->pause"'
    )
    control_url: str = Field(
        "", description="where the worker serves failpoint control, e.g. http://127.0.0.1:7100"
    )
    worker_id: str = Field(default_factory=_default_worker_id, description="this worker's name")
    # the upload job kind (``upload``)
    s3_endpoint_url: str = Field("", description="S3-compatible endpoint, e.g. a moto server or "
                                                 "MinIO (empty: AWS itself)")
    s3_region: str = Field("us-east-1", description="S3 region")
    s3_attempts: int = Field(5, ge=1, le=20, description="tries per S3 call (botocore retries)")
    s3_outage_s: float = Field(
        60.0, ge=0, le=3600,
        description="how long an S3 call is tried again, after botocore's own tries, while S3 "
                    "is busy (503 SlowDown), failing (500) or unreachable; then the job fails")
    s3_timeout_s: float = Field(30.0, gt=0, description="connect and read timeout of an S3 call")
    upload_root: Path | None = Field(
        None, description="upload sources must be files under it (default: DATA_DIR/streams)")
    upload_part_bytes: int = Field(
        8 * 1024 * 1024, ge=1024, le=5 * 1024 ** 3,
        description="part size of new upload jobs (S3 wants at least 5 MiB but for the last)")
    upload_poll_ms: int = Field(200, ge=5, description="how often a growing source is looked at")
    upload_stale_after_s: float = Field(
        300.0, gt=0, le=86400, description="a source that stops growing this long unfinished "
                                           "is stale (default for new jobs)")
    upload_on_stale: Literal["finalize", "fail"] = Field(
        "fail", description="what a stale source does: finalize as it is, or fail the job")

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str) -> str:
        if urlsplit(value).scheme not in ("redis", "rediss", "unix"):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @field_validator("openai_base_url")
    @classmethod
    def _http_scheme(cls, value: str) -> str:
        if urlsplit(value).scheme not in ("http", "https"):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @field_validator("s3_endpoint_url")
    @classmethod
    def _s3_scheme(cls, value: str) -> str:
        if value and urlsplit(value).scheme not in ("http", "https"):
            raise ValueError("must be empty (AWS) or an http:// or https:// URL")
        return value

    @field_validator("control_url")
    @classmethod
    def _control_url(cls, value: str) -> str:
        if value:
            parts = urlsplit(value)
            if parts.scheme != "http" or not parts.hostname or not parts.port:
                raise ValueError("must look like http://127.0.0.1:PORT")
        return value

    @model_validator(mode="after")
    def _heartbeat_below_ttl(self) -> Settings:
        if self.heartbeat_ms * 2 > self.lease_ttl_ms:
            raise ValueError(
                f"CRASHLAB_HEARTBEAT_MS ({self.heartbeat_ms}) must be at most half of "
                f"CRASHLAB_LEASE_TTL_MS ({self.lease_ttl_ms}) so a lease is renewed in time"
            )
        return self

    @property
    def redacted_redis_url(self) -> str:
        """The Redis URL with any password masked, for logs."""
        parts = urlsplit(self.redis_url)
        if parts.password:
            netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
            return parts._replace(netloc=netloc).geturl()
        return self.redis_url

    @property
    def upload_dir(self) -> Path:
        """Where upload sources must live."""
        return (self.upload_root or self.data_dir / "streams").resolve()

    @property
    def control_address(self) -> tuple[str, int] | None:
        if not self.control_url:
            return None
        parts = urlsplit(self.control_url)
        assert parts.hostname is not None and parts.port is not None
        return parts.hostname, parts.port


def load_settings() -> Settings:
    """Read the environment; raise ``ConfigError`` naming every bad variable."""
    try:
        return Settings()
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = err["loc"]
            name = f"{ENV_PREFIX}{str(loc[0]).upper()}" if loc else "configuration"
            if loc and str(loc[0]) in ("openai_base_url", "openai_api_key"):
                name = str(loc[0]).upper()
            value = err.get("input")
            shown = "" if not loc or isinstance(value, dict) else f"={value!r}"
            lines.append(f"  {name}{shown}: {err['msg']}")
        raise ConfigError("invalid configuration:\n" + "\n".join(lines)) from None


def describe() -> str:
    """One line per environment variable, for ``--help``."""
    rows = []
    for name, info in Settings.model_fields.items():
        env = f"{ENV_PREFIX}{name.upper()}"
        if name in ("openai_base_url", "openai_api_key"):
            env = name.upper()
        default = info.default
        if isinstance(default, SecretStr):
            default = "(set)"
        elif info.default_factory is not None:
            default = "<hostname>-<pid>"
        rows.append(f"  {env:<34} {info.description} [default: {default}]")
    return "\n".join(rows)
