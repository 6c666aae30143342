"""Pure rules: no I/O, no database, no templates; each decides one thing.

- :mod:`~newsletter.rules.addresses`: what an email address must look like to be stored
  and sent (one rule for the store, the message builder and the sign-up form);
- :mod:`~newsletter.rules.names`: what a person's name may hold (one line of text, no
  control characters, at most 200 characters), for the CLI, the import and the sign-up;
- :mod:`~newsletter.rules.months`: issue months (``YYYY-MM``) and calendar arithmetic;
- :mod:`~newsletter.rules.statuses`: subscriber statuses and how they change, who is still
  receiving, and the states of a send and of a delivery;
- :mod:`~newsletter.rules.variants`: which summaries a reader gets (:class:`VariantKey`);
- :mod:`~newsletter.rules.links`: the web addresses in emails and whether they are secure;
- :mod:`~newsletter.rules.personal`: the personal fields filled into each message;
- :mod:`~newsletter.rules.schedules`: when a monthly rule fires, and dates in the
  configured time zone;
- :mod:`~newsletter.rules.wrapping`: how the plain-text part wraps its lines.

These modules import nothing of the program but :mod:`newsletter.errors` and
:mod:`newsletter.config`, so every layer above may use them.
"""
