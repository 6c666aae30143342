"""The scheduler process (``newsletter scheduler run``): an entry point, like the CLI and
the web pages. APScheduler runs here, with its jobs in memory, rebuilt from the store;
what a firing does is :mod:`newsletter.services.schedules`."""
