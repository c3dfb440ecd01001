"""Prometheus metrics of a worker process (``CRASHLAB_METRICS_PORT``).

    crashlab_jobs{state}                          jobs per state, refreshed by the worker loop
    crashlab_recoveries_total{outcome}            takeovers of orphaned jobs: claimed | failed
    crashlab_lease_losses_total                   jobs stopped because their lease was lost
    crashlab_timeouts_total                       jobs this worker's monitor timed out
    crashlab_duplicate_prevention_total           chunks whose result came from the service's
                                                  status instead of a new call
    crashlab_chunks_committed_total               chunk results committed by this worker
    crashlab_writes_rejected_total{reason}        writes refused by the fencing check
    crashlab_upload_parts_committed_total         upload parts checkpointed by this worker
    crashlab_upload_bytes_committed_total         bytes in those parts
    crashlab_upload_parts_reuploaded_total        parts sent again while resuming
    crashlab_upload_aborts_total                  multipart uploads aborted (jobs that failed)
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, start_http_server

JOBS = Gauge("crashlab_jobs", "Jobs per state", ["state"])
RECOVERIES = Counter("crashlab_recoveries", "Takeovers of orphaned jobs", ["outcome"])
LEASE_LOSSES = Counter("crashlab_lease_losses", "Jobs stopped because the lease was lost")
TIMEOUTS = Counter("crashlab_timeouts", "Jobs timed out by this worker's monitor")
DUPLICATES_PREVENTED = Counter("crashlab_duplicate_prevention",
                               "Chunks committed from the service's status, not a new call")
CHUNKS_COMMITTED = Counter("crashlab_chunks_committed", "Chunk results committed")
WRITES_REJECTED = Counter("crashlab_writes_rejected", "Writes refused by fencing", ["reason"])
UPLOAD_PARTS = Counter("crashlab_upload_parts_committed", "Upload parts checkpointed")
UPLOAD_BYTES = Counter("crashlab_upload_bytes_committed", "Bytes in checkpointed upload parts")
UPLOAD_REUPLOADS = Counter("crashlab_upload_parts_reuploaded", "Parts sent again on resume")
UPLOAD_ABORTS = Counter("crashlab_upload_aborts", "Multipart uploads aborted")


def serve(port: int) -> None:
    """Serve /metrics on 127.0.0.1:``port`` from a daemon thread."""
    start_http_server(port, addr="127.0.0.1")
