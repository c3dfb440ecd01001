"""The wheels the worker image installs from, made on the host with ``pip wheel``.

``make_wheelhouse`` leaves the project's own wheel in ``<context>/project``
and every dependency's wheel in ``<context>/deps``; the image build then
installs them with ``pip install --no-index``, so it needs no network. The
host's pip does the downloading (with this machine's pip configuration,
index, proxy and certificates) into a cache folder that later builds try
first, offline.

The host's interpreter resolves the requirements, but the image's
interpreter installs them, and the two can disagree: environment markers
such as ``python_full_version < "3.11.3"`` (redis needs ``async-timeout``
below 3.11.3) come out differently on 3.11.7 and on Debian's 3.11.2.
``missing_requirements`` therefore walks the requirement tree again with
the image's own marker values (``image_markers``) and reports what the
wheelhouse lacks; those are fetched too, until nothing is missing.
"""

from __future__ import annotations

import email.parser
import json
import shutil
import sys
import tomllib
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename

from harness.errors import SetupError

Progress = Callable[[str], None]
Runner = Callable[[Sequence[str]], None]

# Prints the PEP 508 marker environment of the interpreter that runs it
# (the same keys as ``packaging.markers.default_environment``), using only
# the standard library, since the image has nothing else before the install.
MARKERS_SCRIPT = """\
import json, os, platform, sys
v = sys.implementation.version
impl = f"{v.major}.{v.minor}.{v.micro}"
if v.releaselevel != "final":
    impl += v.releaselevel[0] + str(v.serial)
print(json.dumps({
    "implementation_name": sys.implementation.name, "implementation_version": impl,
    "os_name": os.name, "platform_machine": platform.machine(),
    "platform_release": platform.release(), "platform_system": platform.system(),
    "platform_version": platform.version(), "python_full_version": platform.python_version(),
    "platform_python_implementation": platform.python_implementation(),
    "python_version": ".".join(platform.python_version_tuple()[:2]),
    "sys_platform": sys.platform,
}))
"""
_ROUNDS = 5


def parse_markers(output: str) -> dict[str, str]:
    """The marker environment printed by ``MARKERS_SCRIPT``."""
    try:
        markers = json.loads(output.strip().splitlines()[-1])
    except (ValueError, IndexError) as exc:
        raise SetupError(f"cannot read the image's Python environment from {output!r}") from exc
    return {str(key): str(value) for key, value in markers.items()}


def project_files(root: Path) -> list[Path]:
    """The files the project's wheel is built from: its packages and metadata files."""
    config = tomllib.loads((root / "pyproject.toml").read_text())
    include = config["tool"]["setuptools"]["packages"]["find"]["include"]
    files = [path for path in (root / "pyproject.toml", root / "README.md", root / "LICENSE")
             if path.is_file()]
    for package in sorted({str(pattern).rstrip("*") for pattern in include}):
        files += sorted(path for path in (root / package).rglob("*")
                        if path.is_file() and "__pycache__" not in path.parts
                        and path.suffix not in (".pyc", ".pyo"))
    return files


def make_wheelhouse(root: Path, cache: Path, context: Path, markers: Mapping[str, str],
                    run: Runner, say: Progress) -> None:
    """Fill ``context/project`` and ``context/deps``; see the module docstring.

    ``run`` runs one command (raising ``SetupError`` if it fails), ``markers``
    is the image interpreter's marker environment.
    """
    cache.mkdir(parents=True, exist_ok=True)
    out = context / "wheels"
    out.mkdir(parents=True)
    pyproject = tomllib.loads((root / "pyproject.toml").read_text())
    # built from a copy, so setuptools' build/ folder never lands in the checkout
    source = context / "source"
    for path in project_files(root):
        target = source / path.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    say("wheelhouse: pip wheel from the local cache")
    _pip_wheel(run, say, cache, out, [str(source)],
               build_requires=pyproject["build-system"]["requires"])
    for _ in range(_ROUNDS):
        missing = missing_requirements(pyproject["project"]["dependencies"], out, markers)
        if not missing:
            break
        say(f"wheelhouse: the image's Python {markers.get('python_full_version')} also needs "
            f"{', '.join(missing)}")
        _pip_wheel(run, say, cache, out, missing)
    else:
        raise SetupError(f"the wheelhouse still lacks {', '.join(missing)} after {_ROUNDS} "
                         f"rounds of pip wheel; see the build log")
    own = canonicalize_name(pyproject["project"]["name"])
    (context / "deps").mkdir()
    (context / "project").mkdir()
    for path in sorted(out.glob("*.whl")):
        if parse_wheel_filename(path.name)[0] == own:
            path.rename(context / "project" / path.name)
            continue
        if not (cache / path.name).exists():
            shutil.copy2(path, cache / path.name)
        path.rename(context / "deps" / path.name)
    out.rmdir()
    shutil.rmtree(source)
    say(f"wheelhouse: {len(list((context / 'deps').iterdir()))} dependency wheels "
        "and the project's own")


def missing_requirements(requirements: Sequence[str], wheels: Path,
                         markers: Mapping[str, str]) -> list[str]:
    """Requirements that apply under ``markers`` yet have no wheel in ``wheels``.

    Walks from ``requirements`` through each wheel's ``Requires-Dist``,
    honouring the extras each requirement asks for.
    """
    available = {parse_wheel_filename(path.name)[0]: path for path in wheels.glob("*.whl")}
    todo: list[tuple[Requirement, frozenset[str]]] = [
        (Requirement(text), frozenset()) for text in requirements]
    seen: set[tuple[str, frozenset[str]]] = set()
    missing: dict[str, str] = {}
    while todo:
        requirement, parent_extras = todo.pop()
        if requirement.marker is not None and not any(
                requirement.marker.evaluate({**markers, "extra": extra})
                for extra in (parent_extras or {""})):
            continue
        name = canonicalize_name(requirement.name)
        extras = frozenset(requirement.extras)
        if name not in available:
            extra_text = f"[{','.join(sorted(extras))}]" if extras else ""
            missing[name] = f"{requirement.name}{extra_text}{requirement.specifier}"
            continue
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        for text in _requires_dist(available[name]):
            todo.append((Requirement(text), extras))
    return sorted(missing.values())


def _requires_dist(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        name = next((n for n in archive.namelist()
                     if n.endswith(".dist-info/METADATA") and n.count("/") == 1), None)
        if name is None:
            raise SetupError(f"{wheel.name} has no METADATA; delete it from the wheel cache")
        metadata = email.parser.Parser().parsestr(archive.read(name).decode())
    return list(metadata.get_all("Requires-Dist") or [])


def _pip_wheel(run: Runner, say: Progress, cache: Path, out: Path, what: Sequence[str],
               build_requires: Sequence[str] = ()) -> None:
    """``pip wheel what`` into ``out``: from the cache alone if it can, else from the index."""
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "wheel",
           "--find-links", str(cache), "--wheel-dir", str(out)]
    try:
        run([*pip, "--no-index", *what])
        return
    except SetupError:
        say("wheelhouse: the cache lacks some wheels; pip wheel from the package index")
    if build_requires:  # so that the next offline round can build the project too
        run([*pip[:5], "--wheel-dir", str(cache), *build_requires])
    run([*pip, *what])
