"""Delivery: getting finished messages to subscribers.

Message assembly (:mod:`newsletter.delivery.message`), the transports by URL scheme
(:mod:`newsletter.delivery.transports`: the SMTP connection pool and the file outbox), rate
limiting (:mod:`newsletter.delivery.ratelimit`), DKIM signing
(:mod:`newsletter.delivery.dkimsign`) and the workers that drain the ledger
(:mod:`newsletter.delivery.worker`). Only this package talks SMTP.
"""
