"""The real servers a run needs, each started as a child process on 127.0.0.1.

One module per server: ``redis_server`` (Redis, optionally with an AOF),
``toxiproxy`` (network faults between the worker and Redis), ``s3`` (a moto
server standing in for S3), and the transcription service. Every server is
started through ``harness.procs.ManagedProcess``, so none outlives the harness.
"""
