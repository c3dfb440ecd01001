"""A real moto server standing in for S3, on a loopback port.

The worker uploads its results to S3; crashlab points it at a moto server
(``python -m moto.server``, the same program as moto 5's ``moto_server``
console script, started with this interpreter so no PATH lookup is needed).
Its state lives in memory: ``reset()`` empties it and ``stop()`` loses it.

Nothing may reach real AWS. Clients made here use dummy ``testing``
credentials, region us-east-1 and the explicit endpoint, and read neither
``~/.aws/config`` nor ``~/.aws/credentials`` nor any proxy settings, so no
profile, credential provider or instance metadata service is consulted.
``client_env()`` gives worker processes the same isolation through
environment variables (there the AWS SDK reads them, so they are set, and
the ones that would point elsewhere are removed).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from harness.errors import SetupError
from harness.ports import LOOPBACK, on_free_port, port_open, wait_until
from harness.procs import ManagedProcess, ProcessRegistry

log = logging.getLogger(__name__)

REGION = "us-east-1"
ACCESS_KEY = "testing"
SECRET_KEY = "testing"
HOW_TO_INSTALL = "install moto with its server extra: pip install 'moto[server]'"


# Environment that keeps any AWS SDK away from everything but the endpoint.
_ISOLATION_ENV: Mapping[str, str] = {
    "AWS_ACCESS_KEY_ID": ACCESS_KEY,
    "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "NO_PROXY": "127.0.0.1,localhost",
    "no_proxy": "127.0.0.1,localhost",
}
# Variables that would point an SDK somewhere else or at other credentials.
_REMOVED_ENV = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_ENDPOINT_URL",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
)


def _import(module: str) -> Any:
    """boto3 and botocore, imported only when a client is made.

    The moto server itself needs neither, and neither ships type hints.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise SetupError(f"S3Server.client() needs boto3: pip install boto3 ({exc})") from exc


def _sealed_session_vars() -> dict[str, tuple[Any, ...]]:
    """botocore session variables that read no environment variable and no file.

    ``set_config_variable(name, None)`` does not do it: None falls through to
    the environment (``AWS_PROFILE`` naming a profile that is not in the
    config file is then an error). Overriding each variable's definition
    with no environment variable does.
    """
    defaults: Mapping[str, tuple[Any, ...]] = getattr(
        _import("botocore.configprovider"), "BOTOCORE_DEFAUT_SESSION_VARIABLES", {}  # sic
    )
    sealed = {name: (spec[0], None, *spec[2:]) for name, spec in defaults.items()}
    sealed["profile"] = (None, None, None, None)
    sealed["config_file"] = (None, None, os.devnull, None)
    sealed["credentials_file"] = (None, None, os.devnull, None)
    return sealed


def isolated_aws_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) cut off from real AWS."""
    env = dict(os.environ if base is None else base)
    for name in _REMOVED_ENV:
        env.pop(name, None)
    env.update(_ISOLATION_ENV)
    return env


class S3Server:
    """One moto server process; S3 at ``endpoint_url``."""

    def __init__(
        self,
        workdir: Path,
        *,
        registry: ProcessRegistry | None = None,
        port: int | None = None,
        startup_timeout: float = 30.0,
        part_min_size: int | None = None,
    ) -> None:
        self.workdir = workdir.resolve()
        self.registry = registry
        self.startup_timeout = startup_timeout
        # S3 refuses to complete an upload whose parts but the last are under 5 MiB; a
        # smaller minimum here lets tests use small parts under the same rule
        self.part_min_size = part_min_size
        self._port = port
        self._proc: ManagedProcess | None = None

    @property
    def port(self) -> int:
        if self._port is None or self._proc is None:
            raise RuntimeError("the moto server has not been started")
        return self._port

    @property
    def endpoint_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "moto.log"

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError("the moto server was never started")
        return self._proc.pid

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.is_running()

    def client(self) -> Any:
        """A boto3 S3 client for this server only (dummy credentials, path-style URLs)."""
        core = _import("botocore.session").Session(session_vars=_sealed_session_vars())
        session = _import("boto3.session").Session(
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name=REGION,
            botocore_session=core,
        )
        config = _import("botocore.config").Config(
            proxies={},  # an empty mapping, unlike None, ignores HTTP(S)_PROXY
            connect_timeout=5,
            read_timeout=30,
            retries={"max_attempts": 2, "mode": "standard"},
            s3={"addressing_style": "path"},
        )
        return session.client("s3", endpoint_url=self.endpoint_url, config=config)

    def client_env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """Environment for a worker process: isolated AWS settings plus this endpoint."""
        env = isolated_aws_env(base)
        env["AWS_ENDPOINT_URL_S3"] = self.endpoint_url
        return env

    def start(self) -> S3Server:
        """Start moto and wait until it answers over HTTP; returns ``self``."""
        if self.is_running():
            raise RuntimeError("the moto server is already running")
        missing = [name for name in ("moto", "flask") if importlib.util.find_spec(name) is None]
        if missing:
            raise SetupError(
                f"the moto server needs {' and '.join(missing)} in {sys.executable}; "
                f"{HOW_TO_INSTALL}"
            )
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self._port is not None:
            self._launch(self._port)
            return self
        on_free_port(self._launch, "moto")
        return self

    def reset(self) -> None:
        """Delete every bucket and object (moto's ``POST /moto-api/reset``)."""
        self._request("POST", "/moto-api/reset")
        log.info("moto server on port %d reset", self.port)

    def stop(self, grace: float = 3.0) -> None:
        if self._proc is None:
            return
        was_running = self._proc.is_running()
        code = self._proc.stop(grace)
        if was_running:
            log.info("moto server on port %s stopped (exit %s)", self._port, code)

    def log_tail(self, lines: int = 40) -> str:
        return "" if self._proc is None else self._proc.log_tail(lines)

    def __enter__(self) -> S3Server:
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

    def _request(self, method: str, path: str, *, port: int | None = None) -> httpx.Response:
        url = f"http://{LOOPBACK}:{port or self.port}{path}"
        try:
            response = httpx.request(method, url, timeout=5.0, trust_env=False)
        except httpx.HTTPError as exc:
            raise SetupError(f"moto server: {method} {url} failed: {exc!r}") from exc
        if not response.is_success:
            raise SetupError(
                f"moto server: {method} {url} answered HTTP {response.status_code}: "
                f"{response.text[:200]}"
            )
        return response

    def _launch(self, port: int) -> None:
        if port_open(port):
            raise SetupError(f"cannot start the moto server: port {port} is already in use")
        env = isolated_aws_env()
        env["PYTHONUNBUFFERED"] = "1"
        if self.part_min_size is not None:
            env["S3_UPLOAD_PART_MIN_SIZE"] = str(self.part_min_size)
        proc = ManagedProcess(
            f"moto-server:{port}",
            [sys.executable, "-m", "moto.server", "-H", LOOPBACK, "-p", str(port)],
            log_path=self.log_path,
            env=env,
            cwd=self.workdir,
            registry=self.registry,
        )
        proc.start()

        def ready() -> bool:
            try:
                self._request("GET", "/moto-api/", port=port)
            except SetupError:
                return False
            return True

        try:
            wait_until(
                ready,
                timeout=self.startup_timeout,
                what=f"moto server on port {port}",
                alive=proc.is_running,
                interval=0.1,
            )
        except (TimeoutError, RuntimeError) as exc:
            proc.stop(grace=1.0)
            raise SetupError(f"{exc}\n--- {self.log_path} ---\n{proc.log_tail()}") from None
        except BaseException:  # Ctrl-C while waiting: leave nothing running
            proc.stop(grace=1.0)
            raise
        self._proc, self._port = proc, port
        log.info("moto server ready at http://%s:%d (pid %d)", LOOPBACK, port, proc.pid)
