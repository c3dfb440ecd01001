"""crashlab's harness: the part that attacks a worker and judges what it did.

Layers, bottom up (a module may import only from layers below it):

1. ``errors``, ``ports``, ``procs``: the root exception, loopback ports, and
   processes that are cleaned up on every exit path.
2. ``services``: the real servers a run needs (Redis, Toxiproxy, the
   OpenAI-compatible transcription service, S3).
3. ``runtime``: where workers run (``process``; ``docker`` later).
4. faults, history, checkers, runner, exploration.
5. ``cli``: imports everything; nothing imports it.

The worker under attack is reached only through a target adapter, never by
importing ``system_under_test`` internals.
"""
