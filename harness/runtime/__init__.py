"""Where workers run: the ``Runtime`` protocol and its implementations.

``base`` defines the protocol and ``WorkerHandle``; ``process`` runs workers
as local child processes, ``docker`` as containers on the host's network
(imported on demand: it needs the ``docker`` SDK and an engine).
"""

from harness.runtime.base import EventSink, Runtime, WorkerHandle

__all__ = ["EventSink", "Runtime", "WorkerHandle"]
