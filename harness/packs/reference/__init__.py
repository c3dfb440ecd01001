"""The ``reference`` pack: crashlab's own media worker (``system_under_test``).

Its adapter (``target``) starts the worker's API and workers, the
OpenAI-compatible transcription service and, for upload jobs, the S3
server; submits tone-coded audio or growing files through the real API;
and reads the worker's Redis keys and event stream as a written-down
contract, importing nothing of ``system_under_test``.
"""
