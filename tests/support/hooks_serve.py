"""Run the ``newsletter`` command with the webhooks' one network call answered locally.

AWS cannot be reached from the tests, so this script (run as a file: ``python
tests/support/hooks_serve.py serve --port N``) puts a stand-in for
:func:`newsletter.services.bounces.https_get` before it starts the real command: the SNS
certificates of ``NEWSLETTER_TEST_SNS_CERTS`` (a JSON file, URL -> PEM) are served, a
ConfirmSubscription URL gets an empty answer, anything else fails like an unreachable
host; every URL asked for is appended to ``NEWSLETTER_TEST_FETCH_LOG``. The rest of the
process (waitress, Flask, the store) is the program as shipped.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from newsletter.cli import main
from newsletter.services import bounces


def _fetch(url: str) -> bytes:
    with Path(os.environ["NEWSLETTER_TEST_FETCH_LOG"]).open("a") as log:
        log.write(url + "\n")
    certs = json.loads(Path(os.environ["NEWSLETTER_TEST_SNS_CERTS"]).read_text())
    if url in certs:
        return str(certs[url]).encode()
    if "Action=ConfirmSubscription" in url:
        return b"<ConfirmSubscriptionResponse/>"
    raise OSError(f"{url} is unreachable in tests")


if __name__ == "__main__":
    bounces.https_get = _fetch
    main()
