"""Where workers run: the ``Runtime`` protocol and its implementations.

``base`` defines the protocol and ``WorkerHandle``; ``process`` runs workers
as local child processes. A Docker runtime can implement the same protocol.
"""

from harness.runtime.base import EventSink, Runtime, WorkerHandle

__all__ = ["EventSink", "Runtime", "WorkerHandle"]
