"""The reference worker crashlab attacks: a media-to-text job service.

``python -m system_under_test api`` serves the HTTP API; ``python -m
system_under_test worker`` claims jobs, cuts the media into chunks with
ffmpeg, transcribes each chunk through the ``openai`` SDK and commits every
result in one atomic Redis step fenced by the job's epoch.

Module map (one job, top to bottom): ``api`` accepts the upload ->
``store`` (Lua scripts; keys in ``constants``, events in ``events``) queues
it -> ``worker`` claims it and renews the lease -> ``pipeline`` cuts it
(``media``), transcribes (``transcriber``), commits and completes ->
``recovery`` takes over jobs whose worker died. ``failpoints`` and
``control`` let a harness stop the worker at exact points.

The second job kind, ``upload``, streams a (possibly growing) file into an
S3 multipart upload: ``upload_api`` accepts it, ``upload`` runs it with a
checkpoint per part (``upload_store``, ``upload_lua``), ``objectstore`` is
the one module that talks to S3 (``boto3``).

This package imports nothing from the harness.
"""
