"""Delivery: getting finished messages to subscribers.

So far this package holds the transports (:mod:`newsletter.delivery.transport`): the SMTP
connection pool and the file outbox, with rate limiting
(:mod:`newsletter.delivery.ratelimit`) and DKIM signing
(:mod:`newsletter.delivery.dkimsign`). Only this package talks SMTP.
"""
