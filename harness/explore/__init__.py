"""Crash-schedule exploration: Hypothesis generates schedules, shrinks failures, saves them.

``strategies`` builds schedules from a target's phase catalog and the fault
kinds; ``explorer`` runs them against the real worker in one long-lived
session and keeps the smallest failing schedule as a replayable run folder;
``mutants`` measures how quickly exploration exposes planted recovery bugs.
"""
