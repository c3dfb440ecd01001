"""Exceptions that steer a job's outcome inside the worker.

    Fenced       a write was refused by the epoch check: the job is someone
                 else's now; stop and change nothing
    JobFailure   the job cannot succeed; the message becomes its ``error``
    S3Error      an S3 call failed for a reason a resume does not expect
                 (``objectstore`` turns the expected ones into values)

Anything else raised while processing a job is caught in one place
(``worker.Worker._run_job``) and also fails the job, with the exception's
type and message as the reason.
"""

from __future__ import annotations

import redis.exceptions

# a Redis that cannot be reached (or did not answer in time): retried, never fatal
REDIS_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


class Fenced(Exception):
    """A write was refused by the epoch check."""


class JobFailure(Exception):
    """The job cannot succeed; the message is the reason stored on the job."""


class S3Error(Exception):
    """An S3 call failed; the message names the operation, the object and S3's error code."""

    def __init__(self, operation: str, target: str, code: str, message: str) -> None:
        super().__init__(f"S3 {operation} on {target} failed: {code} {message}".strip())
        self.code = code
