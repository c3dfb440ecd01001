"""The one module that talks to a Docker engine, through the ``docker`` SDK.

Every blocking SDK call of the harness lives here, behind ``Engine``: start a
labelled container, signal, pause and unpause it, wait for its exit, remove
it, list containers by label, import a root filesystem as an image and build
an image. The docker runtime (``harness.runtime.docker``) and the image
builder (``harness.image``) use nothing else; callers that are async must
call these through ``asyncio.to_thread``.

Labels (one place; ``docker ps -a --filter label=crashlab.owner`` lists every
container crashlab started):

    crashlab.owner           pid of the harness process that started it
    crashlab.owner-started   that process's start time (``psutil`` create_time),
                             so a recycled pid is never taken for the owner
    crashlab.run             absolute path of the run folder
    crashlab.runtime         id of the ``DockerRuntime`` instance
    crashlab.worker          the worker incarnation's name

A harness that dies without teardown leaves its containers running;
``remove_orphans`` (called at the next start by ``harness.cleanup`` and by
every new docker runtime) removes the containers whose owner is gone.
"""

from __future__ import annotations

import logging
import os
import signal
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import docker
import docker.constants
import docker.errors
import psutil
from docker.models.containers import Container

from harness.cleanup import DOCKER_SOCKET, docker_engine_listening
from harness.errors import SetupError
from harness.procs import is_alive

log = logging.getLogger(__name__)

LABEL_OWNER = "crashlab.owner"
LABEL_OWNER_STARTED = "crashlab.owner-started"
LABEL_RUN = "crashlab.run"
LABEL_RUNTIME = "crashlab.runtime"
LABEL_WORKER = "crashlab.worker"

SETUP_HINT = ("start one with `bash scripts/setup.sh --with-docker` "
              "(installs docker.io, starts dockerd)")
# One connection per watched container (each blocks in `wait`) plus a few for calls.
_POOL_SIZE = 64


@dataclass(frozen=True)
class ContainerSpec:
    """What to run: a command in an image, with host networking."""

    name: str
    image: str
    command: Sequence[str]
    env: Mapping[str, str]
    labels: Mapping[str, str]
    # host path -> (path in the container, "rw" | "ro")
    binds: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    entrypoint: Sequence[str] | None = None
    user: str | None = None
    working_dir: str | None = None


@dataclass(frozen=True)
class ContainerState:
    """One container as the engine reports it."""

    id: str
    name: str
    status: str  # created, running, paused, restarting, exited, dead, removing
    pid: int  # on this host; 0 when not running
    exit_code: int
    labels: Mapping[str, str]

    @property
    def alive(self) -> bool:
        return self.status in ("running", "paused", "restarting")


def owner_labels() -> dict[str, str]:
    """The labels that tie a container to this harness process."""
    return {LABEL_OWNER: str(os.getpid()),
            LABEL_OWNER_STARTED: repr(psutil.Process().create_time())}


def owner_alive(labels: Mapping[str, str]) -> bool:
    """Whether the harness named by a container's owner labels still runs."""
    try:
        pid = int(labels[LABEL_OWNER])
        started = float(labels[LABEL_OWNER_STARTED])
    except (KeyError, ValueError):
        return False  # labelled by crashlab but unreadable: nobody can own it
    return is_alive(pid, started)


class Engine:
    """A connection to the Docker engine; see the module docstring."""

    def __init__(self, client: docker.DockerClient) -> None:
        self.client = client

    @classmethod
    def connect(cls, timeout: float = 60.0) -> Engine:
        """Connect to the engine named by the environment (``DOCKER_HOST`` or the socket).

        Raises ``SetupError`` naming the fix when no engine answers.
        """
        where = os.environ.get("DOCKER_HOST") or f"unix://{DOCKER_SOCKET}"
        # The SDK leaves the socket of a refused unix connection unclosed, so a
        # stale socket file is found out without it.
        if not docker_engine_listening(timeout):
            raise SetupError(f"the Docker engine at {where} does not answer (nothing "
                             f"listens there); {SETUP_HINT}")
        # `docker.from_env()` asks the engine for its API version while it
        # builds the client, and when that fails the half-built client is
        # never closed. With a version given it contacts nothing, so the
        # question is asked here, on a client that is closed either way.
        probe = _client(timeout, docker.constants.MINIMUM_DOCKER_API_VERSION, where)
        try:
            api_version = str(probe.api.version(api_version=False)["ApiVersion"])
        except (docker.errors.DockerException, OSError, KeyError) as exc:
            raise SetupError(f"the Docker engine at {where} does not answer ({exc!r}); "
                             f"{SETUP_HINT}") from exc
        finally:
            probe.close()
        return cls(_client(timeout, api_version, where))

    def close(self) -> None:
        """Close pooled connections; later calls open new ones."""
        self.client.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def version(self) -> str:
        """The engine's version and API version, e.g. ``20.10.24 (API 1.41)``."""
        info = self.client.version()
        return f"{info.get('Version', '?')} (API {info.get('ApiVersion', '?')})"

    # -- containers ----------------------------------------------------------

    def run(self, spec: ContainerSpec) -> ContainerState:
        """Create and start a detached container with host networking; its state once started."""
        volumes = {host: {"bind": inside, "mode": mode}
                   for host, (inside, mode) in spec.binds.items()}
        try:
            container = self.client.containers.run(
                spec.image, list(spec.command), detach=True, name=spec.name,
                entrypoint=list(spec.entrypoint) if spec.entrypoint is not None else None,
                environment=dict(spec.env), labels=dict(spec.labels), volumes=volumes,
                network_mode="host", user=spec.user or "", working_dir=spec.working_dir,
            )
        except docker.errors.ImageNotFound as exc:
            raise SetupError(f"image {spec.image!r} is not on this engine; build it with "
                             "`crashlab image build`") from exc
        except docker.errors.APIError as exc:
            raise SetupError(f"cannot start container {spec.name} from {spec.image}: "
                             f"{exc.explanation or exc}") from exc
        container.reload()
        return _state(container)

    def output_of(self, image: str, command: Sequence[str]) -> str:
        """Run ``command`` in a throw-away container without network; its stdout.

        The container is removed on every way out, Ctrl-C included (by its
        name, which is known before the engine is asked to create it), and
        carries the owner labels, so the next start removes it should this
        process die before that.
        """
        name = f"crashlab-probe-{uuid.uuid4().hex[:12]}"
        try:
            container = self.client.containers.create(image, list(command), name=name,
                                                      network_mode="none",
                                                      labels=owner_labels())
            container.start()
            status = int(cast(dict[str, Any], container.wait()).get("StatusCode", -1))
            out = bytes(container.logs(stdout=True, stderr=False)).decode()
            if status != 0:
                err = bytes(container.logs(stdout=False, stderr=True)).decode()
                raise SetupError(f"{' '.join(command)} exited with {status} in {image}: "
                                 f"{err.strip()[-500:]}")
        except docker.errors.APIError as exc:
            raise SetupError(f"cannot run {image}: {exc.explanation or exc}") from exc
        finally:
            self.remove(name)
        return out

    def state(self, container_id: str) -> ContainerState | None:
        """Its current state, or None if it no longer exists."""
        try:
            return _state(self.client.containers.get(container_id))
        except docker.errors.NotFound:
            return None

    def signal(self, container_id: str, sig: int) -> bool:
        """``docker kill --signal``; False when it was not running (or is gone)."""
        try:
            self.client.api.kill(container_id, signal=signal.Signals(sig).name)
        except docker.errors.NotFound:
            return False
        except docker.errors.APIError as exc:
            if exc.status_code == 409:  # "is not running"
                return False
            raise
        return True

    def pause(self, container_id: str) -> bool:
        """Freeze every process of the container (cgroup freezer); False if not running."""
        return self._conflict_is_false(self.client.api.pause, container_id)

    def unpause(self, container_id: str) -> bool:
        """Thaw it; False if it was not paused or is gone."""
        return self._conflict_is_false(self.client.api.unpause, container_id)

    def wait(self, container_id: str) -> int | None:
        """Block until the container stops; its exit status as the engine reports it.

        None if the container disappeared without an exit status.
        """
        try:
            result = cast(dict[str, Any], self.client.api.wait(container_id, timeout=None))
        except docker.errors.NotFound:
            return None
        return int(result.get("StatusCode", -1))

    def remove(self, container_id: str) -> None:
        """Force-remove it (killing it if it still runs); nothing if it is gone."""
        try:
            self.client.api.remove_container(container_id, force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            if exc.status_code != 409:  # 409: removal already in progress
                raise

    def labelled(self, label: str) -> list[ContainerState]:
        """Every container, running or not, carrying ``label`` (``key`` or ``key=value``)."""
        found = []
        for container in self.client.containers.list(all=True, filters={"label": label},
                                                     ignore_removed=True):
            found.append(_state(container))
        return found

    # -- images --------------------------------------------------------------

    def image_id(self, ref: str) -> str | None:
        try:
            return str(self.client.images.get(ref).id)
        except docker.errors.ImageNotFound:
            return None

    def images(self, repository: str) -> list[tuple[str, list[str]]]:
        """(id, tags) of every image of ``repository``, the newest first."""
        found = self.client.images.list(name=repository)
        found.sort(key=lambda image: str(image.attrs.get("Created", "")), reverse=True)
        return [(str(image.id), list(image.tags)) for image in found]

    def tag(self, ref: str, repository: str, tag: str) -> None:
        """Give image ``ref`` the name ``repository:tag`` too (moving that name if taken)."""
        self.client.images.get(ref).tag(repository, tag, force=True)

    def remove_image(self, ref: str) -> bool:
        """Remove image ``ref`` (an id removes all its tags); False if gone or in use."""
        try:
            self.client.images.remove(ref, force=ref.startswith("sha256:"))
        except docker.errors.ImageNotFound:
            return False
        except docker.errors.APIError as exc:
            if exc.status_code != 409:
                raise
            log.info("image %s not removed: %s", ref, exc.explanation or exc)
            return False
        return True

    def import_rootfs(self, tarball: Path, repository: str, tag: str,
                      changes: Sequence[str] = ()) -> str:
        """``docker import``: a root filesystem tarball becomes image ``repository:tag``."""
        try:
            self.client.api.import_image_from_file(str(tarball), repository=repository,
                                                   tag=tag, changes=list(changes))
        except docker.errors.APIError as exc:
            raise SetupError(f"docker import of {tarball} failed: {exc.explanation or exc}") \
                from exc
        image_id = self.image_id(f"{repository}:{tag}")
        if image_id is None:
            raise SetupError(f"docker import of {tarball} reported success, yet "
                             f"{repository}:{tag} is not there")
        return image_id

    def build(self, context: Path, tag: str, *, buildargs: Mapping[str, str],
              labels: Mapping[str, str], on_line: Callable[[str], None]) -> str:
        """``docker build`` of ``context`` without network; each output line to ``on_line``."""
        stream = cast(Iterator[dict[str, Any]], self.client.api.build(
            path=str(context), tag=tag, buildargs=dict(buildargs), labels=dict(labels),
            rm=True, forcerm=True, pull=False, decode=True, network_mode="none",
        ))
        try:
            for chunk in stream:
                if "error" in chunk:
                    raise SetupError(f"docker build of {tag} failed: {chunk['error'].strip()}")
                text = str(chunk.get("stream", "")).strip()
                if text:
                    on_line(text)
        except docker.errors.APIError as exc:
            raise SetupError(f"docker build of {tag} failed: {exc.explanation or exc}") from exc
        image_id = self.image_id(tag)
        if image_id is None:
            raise SetupError(f"docker build of {tag} ended without an image")
        return image_id

    # -- internals -----------------------------------------------------------

    @staticmethod
    def _conflict_is_false(call: Callable[[str], object], container_id: str) -> bool:
        try:
            call(container_id)
        except docker.errors.NotFound:
            return False
        except docker.errors.APIError as exc:
            if exc.status_code == 409:  # not running / not paused / already paused
                return False
            raise
        return True


def remove_orphans(engine: Engine) -> list[str]:
    """Remove every crashlab container whose owner harness is gone; describes each one."""
    removed = []
    for container in engine.labelled(LABEL_OWNER):
        if owner_alive(container.labels):
            continue
        engine.remove(container.id)
        what = (f"container {container.name} ({container.id[:12]}, "
                f"run {container.labels.get(LABEL_RUN, '?')})")
        log.warning("removed %s of an interrupted run", what)
        removed.append(what)
    return removed


def reap_orphan_containers(timeout: float = 5.0) -> list[str]:
    """``remove_orphans`` if an engine answers within ``timeout`` s; [] otherwise.

    For the harness's start-up sweep (``harness.cleanup``, which first checks
    that something listens at the engine's address): an engine that does not
    answer is reported in the log, not raised, and leaves no socket open.
    """
    try:
        with Engine.connect(timeout=timeout) as engine:
            return remove_orphans(engine)
    except (SetupError, docker.errors.DockerException, OSError) as exc:
        log.info("no leftover containers checked: %s", exc)
        return []


def _client(timeout: float, api_version: str, where: str) -> docker.DockerClient:
    """A client for the engine named by the environment; makes no call to it."""
    try:
        return docker.from_env(version=api_version, timeout=max(1, round(timeout)),
                               max_pool_size=_POOL_SIZE)
    except docker.errors.DockerException as exc:  # e.g. a malformed DOCKER_HOST
        raise SetupError(f"no Docker engine at {where} ({exc}); {SETUP_HINT}") from exc


def _state(container: Container) -> ContainerState:
    attrs = container.attrs
    state = cast(dict[str, Any], attrs.get("State") or {})
    config = cast(dict[str, Any], attrs.get("Config") or {})
    status = str(state.get("Status") or container.status)
    return ContainerState(
        id=str(container.id), name=str(attrs.get("Name", "")).lstrip("/") or str(container.name),
        status=status, pid=int(state.get("Pid") or 0), exit_code=int(state.get("ExitCode") or 0),
        labels=dict(config.get("Labels") or {}),
    )
