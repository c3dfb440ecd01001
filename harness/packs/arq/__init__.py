"""The arq pack: real arq 0.28 workers (``arq.worker.Worker``) attacked by crashlab.

``target`` is the adapter the core loads (``--target arq``); ``launch`` the
worker command (arq's own ``Worker`` behind crashlab's control channel) and
the instrumented subclass that gives arq-level failpoints; ``app`` the
example job coroutine that works, bills once and records its effect.
"""
