"""Services: the one place every entry point calls. One module per job.

The CLI, the web pages, the scheduler and the worker hold an :class:`App` (the settings,
with the store and the transport opened once per process) and call functions of these
modules, each taking the app first::

    from newsletter.services import App, sends

    with App(load_settings()) as app:
        preview = sends.plan(app, "2026-12")

- :mod:`~newsletter.services.issues`: check, list, show, preview, variants, the archive;
- :mod:`~newsletter.services.sends`: plan (snapshot), send, worker, status, retry, tests;
- :mod:`~newsletter.services.subscribers`: the subscriber list and each person's changes;
- :mod:`~newsletter.services.signup`: sign-up, confirmation, welcome, "send me my link";
- :mod:`~newsletter.services.imports`: CSV import and export, the blog archive import;
- :mod:`~newsletter.services.schedules`: one-off and monthly sends, firings, the lease;
- :mod:`~newsletter.services.mail`: one way to build and send any single email;
- :mod:`~newsletter.services.setup`: ``init``, the store's migrations and its status;
- :mod:`~newsletter.services.demo`: the demo project the Quick start runs;
- :mod:`~newsletter.services.api_tokens`: the JSON API's tokens (made, listed, revoked,
  checked);
- :mod:`~newsletter.services.error_kinds`: what kind of failure an error is (not found,
  conflict, invalid input, ...), for entry points that answer with a status code.

Rules that decide (statuses, addresses, variants, months) live in :mod:`newsletter.rules`;
persistence in :mod:`newsletter.store`. A service composes them and never talks SQL,
SMTP or MJML itself.
"""

from newsletter.services.app import App

__all__ = ["App"]
