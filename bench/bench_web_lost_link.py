"""Response time of the lost-link form for a known and an unknown address.

The page must not reveal whether an address is subscribed, by its words or by its speed:
the lookup and the email happen after the response. Prints the median time of each.

    .venv/bin/python bench/bench_web_lost_link.py
"""

from __future__ import annotations

import re
import statistics
import tempfile
import time
from pathlib import Path

from newsletter.config import load_settings
from newsletter.services import App, subscribers
from newsletter.services.setup import upgrade_store
from newsletter.web import create_app

N = 200


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "n.db"
        upgrade_store(f"sqlite:///{db}")
        settings = load_settings(
            overrides={
                "database_url": f"sqlite:///{db}",
                "secret_key": "bench",
                "smtp_url": f"outbox:///{tmp}/outbox",  # four slashes: an absolute path
                "sender_address": "digest@example.org",
                "postal_address": "1 Example Street, Exampletown",
                "signup_limit_per_ip": 0,
                "signup_limit_per_address": 0,
            },
            environ={},
        )
        with App(settings) as news:
            subscribers.add_subscriber(news, "known@example.org")
        app = create_app(settings)
        client = app.test_client()
        page = client.get("/preferences").get_data(as_text=True)
        csrf = re.search(r'name="csrf_token" value="([0-9a-f]+)"', page).group(1)
        times: dict[str, list[float]] = {"known": [], "unknown": []}
        for i in range(N):
            for kind in ("known", "unknown") if i % 2 else ("unknown", "known"):
                start = time.perf_counter()
                r = client.post(
                    "/preferences", data={"csrf_token": csrf, "email": f"{kind}@example.org"}
                )
                times[kind].append(time.perf_counter() - start)
                assert r.status_code == 200
                # Each request starts with the background thread idle: what is measured is
                # the request itself, with its own job (lookup, rendering) running beside it.
                app.extensions["newsletter"].jobs.wait_idle(120)
        app.extensions["newsletter"].jobs.wait_idle(120)
        for kind, values in times.items():
            print(f"{kind:8s} median {statistics.median(values) * 1000:.2f} ms over {N} requests")


if __name__ == "__main__":
    main()
