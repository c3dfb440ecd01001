"""The worker image of the docker runtime, built on this machine without a registry.

``ensure_image`` returns an image that has this checkout installed, building
it only when none is up to date. The build has two parts, each reused while
its inputs are unchanged:

1. The base image ``crashlab-base:bookworm-<key>``: a minimal Debian 12
   (whose ``python3`` is 3.11, like the harness) made with ``debootstrap
   --variant=minbase`` from the Debian mirror this machine's apt already
   uses (read from ``/etc/apt/sources.list*`` at build time), packed into
   ``<state>/images/rootfs-*.tar`` and turned into an image with ``docker
   import``. The tarball stays cached, so a lost image is re-imported in
   seconds.
2. The worker image ``crashlab-worker:<key>`` (also tagged ``latest``): the
   base plus a virtualenv in ``/opt/crashlab`` with the project and its
   dependencies installed from a wheelhouse that ``pip wheel`` made on the
   host (``harness.wheelhouse``; wheels cached in ``<state>/images/wheels``).
   The build itself runs with no network at all (``pip install
   --no-index``). Dependencies and the project are separate layers, so a
   code change re-installs only the project.

The worker image's key hashes the recipe, the base image and every file of
the project's packages plus ``pyproject.toml``: any change to the checkout
makes the next ``ensure_image`` build again, and an unchanged checkout finds
its image in well under a second. A new build removes the
``crashlab-worker`` builds older than the ``KEEP_BUILDS`` newest, not at
once every older one: another harness on this machine may still be about
to start workers from the build before (they share every layer but the
project's, so keeping a few costs little).

``CRASHLAB_IMAGE=<ref>`` skips all of this and uses that image as it is
(for example one built from the ``Dockerfile`` at the repository root on a
machine that can pull ``python:3.11-slim``). ``base=<ref>`` builds the worker
image on a given base (any image with a Python 3.11 ``python3`` and its
``venv`` module) instead of the debootstrapped one.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.docker_engine import Engine
from harness.errors import SetupError
from harness.procs import default_state_dir
from harness.runtime.docker import IMAGE_PYTHON
from harness.wheelhouse import MARKERS_SCRIPT, make_wheelhouse, parse_markers, project_files

log = logging.getLogger(__name__)

Progress = Callable[[str], None]

SUITE = "bookworm"  # Debian 12: python3 is 3.11
BASE_PACKAGES = ("python3", "python3-venv")
BASE_REPOSITORY = "crashlab-base"
WORKER_REPOSITORY = "crashlab-worker"
LABEL_KEY = "crashlab.image.key"
KEEP_BUILDS = 3  # worker builds kept, the new one included
RECIPE_VERSION = "1"  # bump when the build changes in a way the key cannot see
IMAGE_ENV = "CRASHLAB_IMAGE"
DEBOOTSTRAP_HINT = "apt-get install debootstrap (or: bash scripts/setup.sh --with-docker)"

_VENV = str(Path(IMAGE_PYTHON).parent.parent)
DOCKERFILE = f"""\
# Written by `crashlab image build` (harness/image.py); built with no network.
ARG BASE_IMAGE
FROM ${{BASE_IMAGE}}
ENV PATH={_VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    PYTHONUNBUFFERED=1 HOME=/tmp
COPY deps /tmp/crashlab-deps
RUN python3 -m venv {_VENV} \\
 && {IMAGE_PYTHON} -m pip install --no-index --no-cache-dir --disable-pip-version-check \\
        /tmp/crashlab-deps/*.whl \\
 && rm -rf /tmp/crashlab-deps
COPY project /tmp/crashlab-project
RUN {IMAGE_PYTHON} -m pip install --no-index --no-deps --no-cache-dir \\
        --disable-pip-version-check /tmp/crashlab-project/*.whl \\
 && rm -rf /tmp/crashlab-project
CMD ["python", "-m", "system_under_test", "worker"]
"""


# (base, images folder) -> the image this process resolved; see ensure_image
_ensured: dict[tuple[str | None, Path], str] = {}


@dataclass(frozen=True)
class ImageResult:
    """The image to run workers from, and whether this call had to build it."""

    ref: str
    built: bool
    seconds: float


@dataclass(frozen=True)
class AptSource:
    """One ``deb`` entry of this machine's apt configuration."""

    uri: str
    suites: tuple[str, ...]
    components: tuple[str, ...]
    signed_by: str | None = None


def ensure_image(*, progress: Progress | None = None, engine: Engine | None = None,
                 base: str | None = None, force: bool = False,
                 state_dir: Path | None = None) -> ImageResult:
    """The up-to-date worker image for this checkout, built if missing; see the module doc.

    A process keeps the image it got first for as long as the engine has it,
    so every scenario of one ``crashlab run`` uses the same image even while
    the checkout is being edited (the next run picks the edits up).
    Concurrent callers (a test session beside a catalog run) take turns on a
    lock in the images folder; the second one then finds the image built.
    """
    say: Progress = progress or (lambda message: None)
    started = time.monotonic()
    override = os.environ.get(IMAGE_ENV)
    own_engine = engine is None
    engine = engine or Engine.connect()
    try:
        if override and not force:
            if engine.image_id(override) is None:
                raise SetupError(f"{IMAGE_ENV}={override} names an image this engine does not "
                                 f"have; build it (docker build -t {override} .) or unset "
                                 f"{IMAGE_ENV} to use `crashlab image build`")
            return ImageResult(override, False, time.monotonic() - started)
        images = (state_dir or default_state_dir()) / "images"
        memo = (base, images)
        known = _ensured.get(memo)
        if known is not None and not force and engine.image_id(known) is not None:
            return ImageResult(known, False, time.monotonic() - started)
        images.mkdir(parents=True, exist_ok=True)
        with _locked(images / "build.lock", say):
            base_ref = base or ensure_base(engine, images, say)
            ref, key, base_id = worker_ref(engine, base_ref)
            built = force or engine.image_id(ref) is None
            if built:
                build_worker(engine, images, base_ref, base_id, ref, key, say)
        _ensured[memo] = ref
        seconds = time.monotonic() - started
        say(f"built {ref} in {seconds:.0f} s" if built else f"worker image {ref} is up to date")
        return ImageResult(ref, built, seconds)
    finally:
        if own_engine:
            engine.close()


def current_ref(engine: Engine) -> tuple[str | None, bool]:
    """The image a docker run would use now (None: no base yet), and whether it exists."""
    override = os.environ.get(IMAGE_ENV)
    if override:
        return override, engine.image_id(override) is not None
    base_ref = f"{BASE_REPOSITORY}:{_base_tag()}"
    if engine.image_id(base_ref) is None:
        return None, False
    ref = worker_ref(engine, base_ref)[0]
    return ref, engine.image_id(ref) is not None


def worker_ref(engine: Engine, base_ref: str) -> tuple[str, str, str]:
    """The worker image's name for this checkout on ``base_ref``, its key, the base's id."""
    base_id = engine.image_id(base_ref)
    if base_id is None:
        raise SetupError(f"base image {base_ref} is not on this engine")
    key = _digest([RECIPE_VERSION, DOCKERFILE, base_id, source_digest(project_root())])[:12]
    return f"{WORKER_REPOSITORY}:{key}", key, base_id


def build_worker(engine: Engine, images: Path, base_ref: str, base_id: str, ref: str,
                 key: str, say: Progress) -> None:
    """Wheelhouse, then ``docker build`` (no network); then all but the newest builds go."""
    say(f"building worker image {ref} on {base_ref}")
    log_file = images / "build.log"
    log_file.write_text(f"crashlab image build {ref}\n")
    context = images / "context"
    shutil.rmtree(context, ignore_errors=True)
    markers = image_markers(engine, base_ref, base_id, images)
    try:
        make_wheelhouse(project_root(), images / "wheels", context, markers,
                        lambda argv: _run(argv, say, log_file), say)
        (context / "Dockerfile").write_text(DOCKERFILE)
        image_id = engine.build(context, ref, buildargs={"BASE_IMAGE": base_ref},
                                labels={LABEL_KEY: key}, on_line=say)
    finally:
        shutil.rmtree(context, ignore_errors=True)
    engine.tag(image_id, WORKER_REPOSITORY, "latest")
    older = [(old_id, tags) for old_id, tags in engine.images(WORKER_REPOSITORY)
             if old_id != image_id]
    for old_id, tags in older[KEEP_BUILDS - 1:]:
        if engine.remove_image(old_id):
            named = [tag for tag in tags if not tag.endswith(":latest")]
            say(f"removed the older build {', '.join(named) or old_id[:19]}")


# -- base image ---------------------------------------------------------------

def ensure_base(engine: Engine, images: Path, say: Progress) -> str:
    """The debootstrapped base image, imported from the cached tarball or made anew."""
    tag = _base_tag()
    ref = f"{BASE_REPOSITORY}:{tag}"
    if engine.image_id(ref) is not None:
        return ref
    tarball = images / f"rootfs-{tag}.tar"
    if not tarball.is_file():
        build_rootfs(tarball, debian_source(SUITE), images, say)
    say(f"docker import {tarball.name} as {ref}")
    engine.import_rootfs(tarball, BASE_REPOSITORY, tag, changes=[
        "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        f"LABEL {LABEL_KEY}={tag}",
    ])
    return ref


def build_rootfs(tarball: Path, source: AptSource, images: Path, say: Progress) -> None:
    """``debootstrap`` a minimal Debian with Python 3.11 and pack it into ``tarball``."""
    debootstrap = shutil.which("debootstrap")
    if debootstrap is None:
        raise SetupError(f"debootstrap is needed to make the base image: {DEBOOTSTRAP_HINT}")
    if os.geteuid() != 0:
        raise SetupError("debootstrap must run as root to make the base image; run "
                         "`crashlab image build` once as root, or set "
                         f"{IMAGE_ENV} to an image built from the repository's Dockerfile")
    rootfs = images / f"rootfs-{os.getpid()}"
    _remove_tree(rootfs)
    argv = [debootstrap, "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}",
            f"--components={','.join(source.components or ('main',))}"]
    if source.signed_by and Path(source.signed_by).is_file():  # not an inline key
        argv.append(f"--keyring={source.signed_by}")
    argv += [SUITE, str(rootfs), source.uri]
    say(f"debootstrap {SUITE} from {source.uri} (a minute or two)")
    log_file = images / "base.log"
    log_file.write_text(f"crashlab base image {tarball.name}\n")
    try:
        _run(argv, say, log_file)
        if not (rootfs / "usr" / "bin" / "python3.11").exists():
            raise SetupError(f"debootstrap of {SUITE} gave no python3.11; see {log_file}")
        for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for item in (rootfs / cache).glob("*"):
                if item.is_file():
                    item.unlink()
        say(f"packing the root filesystem into {tarball.name}")
        partial = tarball.with_suffix(".partial")
        _run(["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(partial), "."], say,
             log_file)
        partial.replace(tarball)
    finally:
        _remove_tree(rootfs)


def image_markers(engine: Engine, base_ref: str, base_id: str, images: Path) -> dict[str, str]:
    """The marker environment of the base image's ``python3`` (cached per base image)."""
    cached = images / f"markers-{base_id.removeprefix('sha256:')[:16]}.json"
    if cached.is_file():
        return parse_markers(cached.read_text())
    output = engine.output_of(base_ref, ["python3", "-c", MARKERS_SCRIPT])
    markers = parse_markers(output)
    if not markers.get("python_version") == "3.11":
        raise SetupError(f"{base_ref} has Python {markers.get('python_full_version')}; the "
                         "worker image needs 3.11, like the harness")
    cached.write_text(json.dumps(markers) + "\n")
    return markers


def apt_sources(paths: Iterable[Path] | None = None) -> list[AptSource]:
    """The ``deb`` entries of this machine's apt configuration, in apt's reading order."""
    if paths is None:
        folder = Path("/etc/apt/sources.list.d")
        listed = sorted(folder.glob("*.list")) + sorted(folder.glob("*.sources"))
        paths = [Path("/etc/apt/sources.list"), *listed]
    found: list[AptSource] = []
    for path in paths:
        try:
            text = path.read_text()
        except OSError:
            continue
        found += _deb822(text) if path.suffix == ".sources" else _one_line(text)
    return found


def debian_source(suite: str, sources: Sequence[AptSource] | None = None) -> AptSource:
    """The apt source that carries ``suite`` itself (not -updates or -security)."""
    for source in sources if sources is not None else apt_sources():
        if suite in source.suites and "main" in (source.components or ("main",)):
            return source
    raise SetupError(f"no apt source of this machine carries Debian {suite} (main), which "
                     f"debootstrap needs for the base image; add one to "
                     f"/etc/apt/sources.list.d/, or set {IMAGE_ENV} to an image built from "
                     "the repository's Dockerfile")


def _one_line(text: str) -> list[AptSource]:
    found = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if not words or words[0] != "deb":
            continue
        words = words[1:]
        signed_by = None
        if words and words[0].startswith("["):  # [arch=amd64 signed-by=/path]
            options = []
            while words:
                word = words.pop(0)
                options.append(word.strip("[]"))
                if word.endswith("]"):
                    break
            for option in options:
                if option.startswith("signed-by="):
                    signed_by = option.split("=", 1)[1]
        if len(words) >= 2:
            found.append(AptSource(words[0], (words[1],), tuple(words[2:]), signed_by))
    return found


def _deb822(text: str) -> list[AptSource]:
    found = []
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line or line[:1].isspace():
                continue
            name, value = line.split(":", 1)
            fields[name.strip().lower()] = value.strip()
        if "deb" not in fields.get("types", "").split() or fields.get("enabled") == "no":
            continue
        for uri in fields.get("uris", "").split():
            found.append(AptSource(uri, tuple(fields.get("suites", "").split()),
                                   tuple(fields.get("components", "").split()),
                                   fields.get("signed-by") or None))
    return found


# -- the project and its wheels ------------------------------------------------

def project_root() -> Path:
    """The checkout the image is built from (where ``pyproject.toml`` is)."""
    root = Path(__file__).resolve().parent.parent
    if not (root / "pyproject.toml").is_file():
        raise SetupError(f"crashlab is installed without its source checkout ({root} has no "
                         f"pyproject.toml), so it cannot build its image; set {IMAGE_ENV} to "
                         "an image built from the repository's Dockerfile")
    return root


def source_digest(root: Path) -> str:
    """A hash of every file that goes into the project's wheel."""
    digest = hashlib.sha256()
    for path in project_files(root):
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


# -- helpers ----------------------------------------------------------------------

def _base_tag() -> str:
    return f"{SUITE}-{_digest([RECIPE_VERSION, SUITE, *BASE_PACKAGES])[:8]}"


@contextlib.contextmanager
def _locked(path: Path, say: Progress) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (one image build at a time on this machine)."""
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say("another crashlab is building the image; waiting for it")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _digest(parts: Iterable[str]) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def _run(argv: Sequence[str], say: Progress, log_file: Path) -> None:
    """Run a build step; each output line to ``say`` and the log; SetupError on failure."""
    tail: list[str] = []
    with log_file.open("a") as log_out:
        log_out.write(f"\n$ {' '.join(argv)}\n")
        log_out.flush()
        try:
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    text=True, stdin=subprocess.DEVNULL)
        except OSError as exc:
            raise SetupError(f"cannot run {argv[0]}: {exc}") from exc
        assert proc.stdout is not None
        with proc:
            for line in proc.stdout:
                log_out.write(line)
                line = line.rstrip()
                if line:
                    tail = [*tail[-9:], line]
                    say(line)
        if proc.returncode != 0:
            last = "\n".join(tail)
            raise SetupError(f"{Path(argv[0]).name} {' '.join(argv[1:3])} ... failed with "
                             f"exit code {proc.returncode} (full output in {log_file}):\n{last}")


def _remove_tree(path: Path) -> None:
    """Delete a half-made root filesystem, first unmounting what debootstrap left mounted."""
    if not path.exists():
        return
    prefix = str(path.resolve())
    try:
        mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    except OSError:
        mounts = []
    for mount in sorted((m for m in mounts if m == prefix or m.startswith(prefix + "/")),
                        reverse=True):
        subprocess.run(["umount", "-l", mount], check=False, capture_output=True)
    shutil.rmtree(path, ignore_errors=True)
