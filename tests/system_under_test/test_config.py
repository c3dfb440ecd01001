"""Configuration errors name the variable and what is expected."""

from __future__ import annotations

import subprocess
import sys

import pytest

from system_under_test.config import ConfigError, load_settings


def test_bad_values_are_reported_per_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRASHLAB_LEASE_TTL_MS", "-5")
    monkeypatch.setenv("CRASHLAB_REDIS_URL", "http://localhost")
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert "CRASHLAB_LEASE_TTL_MS='-5'" in message
    assert "CRASHLAB_REDIS_URL" in message and "redis://" in message


def test_heartbeat_must_fit_twice_in_the_lease(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRASHLAB_LEASE_TTL_MS", "1000")
    monkeypatch.setenv("CRASHLAB_HEARTBEAT_MS", "800")
    with pytest.raises(ConfigError, match="CRASHLAB_HEARTBEAT_MS"):
        load_settings()


def test_password_is_masked_in_the_logged_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRASHLAB_REDIS_URL", "redis://user:s3cret@127.0.0.1:6379/0")
    settings = load_settings()
    assert "s3cret" not in settings.redacted_redis_url
    assert "***" in settings.redacted_redis_url


def test_cli_help_documents_api_worker_and_variables() -> None:
    out = subprocess.run([sys.executable, "-m", "system_under_test", "--help"],
                         capture_output=True, text=True, check=True).stdout
    for word in ("api", "worker", "CRASHLAB_REDIS_URL", "OPENAI_BASE_URL",
                 "CRASHLAB_FAILPOINTS", "CRASHLAB_CONTROL_URL"):
        assert word in out


def test_invalid_environment_exits_2_with_one_clear_line() -> None:
    result = subprocess.run([sys.executable, "-m", "system_under_test", "worker"],
                            capture_output=True, text=True, timeout=30,
                            env={"PATH": "/usr/bin:/bin", "CRASHLAB_CHUNK_SECONDS": "zero"})
    assert result.returncode == 2
    assert "CRASHLAB_CHUNK_SECONDS='zero'" in result.stderr
    assert "Traceback" not in result.stderr
