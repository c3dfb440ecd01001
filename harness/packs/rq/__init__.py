"""The rq pack: real RQ 2.x workers (``rq worker``) attacked by crashlab.

``target`` is the adapter the core loads (``--target rq``); ``launch`` the
worker command (RQ's own CLI behind crashlab's control channel) and the
instrumented subclass of RQ's ``Worker`` that gives RQ-level failpoints;
``app`` the example job that works, bills once and records its effect.
"""
