"""Packs: one per kind of worker crashlab attacks, each behind the core's ``Target`` seam.

A pack brings how to start its workers (and API, if any), its own services,
how to submit its workload and read each job's outcome, its failpoint
vocabulary, its domain checkers and its default settings
(``harness.target.Target`` says each member). Packs import the core; the
core never imports a pack: it finds them by name through the
``crashlab.packs`` entry-point group (``harness.packs_registry``), where
this project registers ``reference``, ``rq`` and ``arq`` and a third party
registers its own.
"""
