"""The docker runtime's parts that need no engine: apt sources, wheelhouse gaps, mapping,
and what connecting does when no engine answers."""

from __future__ import annotations

import gc
import os
import signal
import socket
import sys
import warnings
import zipfile
from pathlib import Path

import pytest

from harness.docker_engine import Engine, reap_orphan_containers
from harness.errors import SetupError
from harness.image import AptSource, apt_sources, debian_source, source_digest
from harness.runtime.docker import (
    IMAGE_PYTHON,
    container_argv,
    container_environment,
    exit_code,
)
from harness.wheelhouse import missing_requirements, parse_markers, project_files

ROOT = Path(__file__).resolve().parents[2]


def test_deb822_and_one_line_sources_are_read_and_the_suite_itself_is_chosen(
    tmp_path: Path
) -> None:
    keyring = tmp_path / "debian.gpg"
    keyring.write_text("")
    deb822 = tmp_path / "debian.sources"
    deb822.write_text(
        "Types: deb\n# a snapshot\nURIs: http://mirror.example/debian\n"
        "Suites: bookworm bookworm-updates\nComponents: main\n"
        f"Signed-By: {keyring}\n\n"
        "Types: deb\nURIs: http://mirror.example/debian-security\n"
        "Suites: bookworm-security\nComponents: main\n\n"
        "Types: deb-src\nURIs: http://src.example/debian\nSuites: bookworm\n")
    one_line = tmp_path / "sources.list"
    one_line.write_text("# old style\n"
                        "deb [arch=amd64 signed-by=/k.gpg] http://other.example/debian trixie "
                        "main contrib\ndeb-src http://other.example/debian trixie main\n")
    sources = apt_sources([one_line, deb822, tmp_path / "missing.list"])
    assert sources[0] == AptSource("http://other.example/debian", ("trixie",),
                                   ("main", "contrib"), "/k.gpg")
    assert [s.uri for s in sources] == ["http://other.example/debian",
                                         "http://mirror.example/debian",
                                         "http://mirror.example/debian-security"]
    chosen = debian_source("bookworm", sources)
    assert chosen.uri == "http://mirror.example/debian"
    assert chosen.signed_by == str(keyring)
    with pytest.raises(SetupError, match="no apt source .* bullseye"):
        debian_source("bullseye", sources)


def make_wheel(folder: Path, name: str, requires: list[str]) -> None:
    dist = f"{name.replace('-', '_')}-1.0"
    with zipfile.ZipFile(folder / f"{dist}-py3-none-any.whl", "w") as wheel:
        metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n"
        metadata += "".join(f"Requires-Dist: {r}\n" for r in requires)
        wheel.writestr(f"{dist}.dist-info/METADATA", metadata)


def test_requirements_that_only_the_image_python_needs_are_reported_missing(
    tmp_path: Path
) -> None:
    make_wheel(tmp_path, "redis", ['async-timeout>=4.0.3; python_full_version < "3.11.3"'])
    make_wheel(tmp_path, "moto", ['flask; extra == "server"', 'boto3; extra == "s3"'])
    make_wheel(tmp_path, "flask", [])
    requirements = ["redis>=5", "moto[server]>=5"]
    host = {"python_full_version": "3.11.7", "python_version": "3.11"}
    image = {"python_full_version": "3.11.2", "python_version": "3.11"}
    assert missing_requirements(requirements, tmp_path, host) == []
    assert missing_requirements(requirements, tmp_path, image) == ["async-timeout>=4.0.3"]
    # boto3 is behind an extra nobody asked for; without moto's wheel, moto itself is missing
    (tmp_path / "moto-1.0-py3-none-any.whl").unlink()
    assert missing_requirements(requirements, tmp_path, host) == ["moto[server]>=5"]


def test_marker_script_output_is_parsed_and_garbage_is_a_setup_error() -> None:
    assert parse_markers('noise\n{"python_version": "3.11"}\n') == {"python_version": "3.11"}
    with pytest.raises(SetupError, match="Python environment"):
        parse_markers("Traceback ...")


def test_source_digest_covers_the_packages_and_ignores_bytecode(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.setuptools.packages.find]\ninclude = ["pkg*"]\n')
    package = tmp_path / "pkg"
    (package / "__pycache__").mkdir(parents=True)
    (package / "mod.py").write_text("x = 1\n")
    before = source_digest(tmp_path)
    (package / "__pycache__" / "mod.cpython-311.pyc").write_bytes(b"\0")
    (tmp_path / "unrelated.txt").write_text("not in the wheel")
    assert source_digest(tmp_path) == before
    (package / "mod.py").write_text("x = 2\n")
    assert source_digest(tmp_path) != before
    assert {p.name for p in project_files(tmp_path)} == {"pyproject.toml", "mod.py"}


def test_the_checkout_itself_is_hashed() -> None:
    names = {str(p.relative_to(ROOT)) for p in project_files(ROOT)}
    assert {"pyproject.toml", "system_under_test/worker.py", "harness/image.py"} <= names


@pytest.mark.parametrize(("status", "code"), [
    (0, 0), (1, 1), (3, 3), (137, -signal.SIGKILL), (143, -signal.SIGTERM), (None, -9)])
def test_engine_exit_status_is_reported_like_subprocess(status: int | None, code: int) -> None:
    assert exit_code(status) == code


def test_the_harness_interpreter_becomes_the_images() -> None:
    assert container_argv([sys.executable, "-m", "system_under_test", "worker"]) == [
        IMAGE_PYTHON, "-m", "system_under_test", "worker"]
    assert container_argv(["/usr/local/bin/my-worker", "--fast"]) == [
        "/usr/local/bin/my-worker", "--fast"]


def test_container_gets_the_targets_variables_but_not_the_hosts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRASHLAB_INHERITED", "same")
    mutant = tmp_path / "mutant"
    mutant.mkdir()
    env = {**os.environ, "CRASHLAB_REDIS_URL": "redis://127.0.0.1:1/0",
           "OPENAI_BASE_URL": "http://127.0.0.1:2/v1", "EXTRA": "added",
           "PYTHONPATH": f"{mutant}:{ROOT}:{tmp_path / 'gone'}",
           "CRASHLAB_PYTHON": sys.executable}
    passed, mounts = container_environment(env)
    assert passed["CRASHLAB_REDIS_URL"] == "redis://127.0.0.1:1/0"
    assert passed["OPENAI_BASE_URL"] == "http://127.0.0.1:2/v1"
    assert passed["EXTRA"] == "added"
    assert passed["CRASHLAB_INHERITED"] == "same"  # CRASHLAB_* always goes through
    assert "PATH" not in passed and passed["HOME"] == "/tmp"
    assert passed["PYTHONPATH"] == str(mutant) and mounts == [mutant]
    assert passed["CRASHLAB_PYTHON"] == IMAGE_PYTHON


def test_connecting_to_a_stale_engine_socket_is_a_setup_error_that_leaks_no_socket(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stale = tmp_path / "docker.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as gone:  # bound, never listening
        gone.bind(str(stale))
    monkeypatch.setenv("DOCKER_HOST", f"unix://{stale}")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(SetupError, match="does not answer.*scripts/setup.sh --with-docker"):
            Engine.connect(timeout=5)
        gc.collect()

    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []
    assert reap_orphan_containers(timeout=5) == []
