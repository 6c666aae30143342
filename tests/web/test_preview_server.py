"""The author's live preview server: every variant, re-rendered from the file on reload."""

from __future__ import annotations

import threading
import urllib.request

from newsletter.config import load_settings
from newsletter.services import App
from newsletter.web.preview_server import preview_server


def test_preview_server_rereads_the_issue(project):
    server = preview_server(App(load_settings()), "2026-10", port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"

    def get(path: str) -> str:
        with urllib.request.urlopen(base + path, timeout=10) as r:
            return r.read().decode()

    try:
        page = get("/?variant=s2")
        assert 'href="/?variant=s1%2Bs3"' in page and "iframe" in page
        assert "Repairing Ruptures in the Alliance Pays Off</h2>" in get("/email.html?variant=s2")
        assert "Dear Alex," in get("/email.txt?variant=all")
        path = project / "issues" / "2026-10.md"
        path.write_text(path.read_text().replace("Repairing Ruptures", "Mending Ruptures"))
        assert "Mending Ruptures in the Alliance Pays Off</h2>" in get("/email.html?variant=s2")
        path.write_text(path.read_text().replace("Topics: Empathy;", "Topics: Nonsense;"))
        assert f"{path}:9: error: unknown topic" in get("/")
    finally:
        server.shutdown()
        server.server_close()
