"""Exceptions that steer a job's outcome inside the worker.

    Fenced       a write was refused by the epoch check: the job is someone
                 else's now; stop and change nothing
    JobFailure   the job cannot succeed; the message becomes its ``error``

Anything else raised while processing a job is caught in one place
(``worker.Worker._run_job``) and also fails the job, with the exception's
type and message as the reason.
"""

from __future__ import annotations


class Fenced(Exception):
    """A write was refused by the epoch check."""


class JobFailure(Exception):
    """The job cannot succeed; the message is the reason stored on the job."""
