"""Scheduling: when sends happen (rules, one-off times, the lease, what a firing does).

APScheduler itself is wired in :mod:`newsletter.schedule`; this package holds the parts
that do not need it running.
"""
