"""Golden files: the sample issues' variants, rendered with fixed settings and clock.

Regenerate after an intended change of templates or rendering with:

    NEWSLETTER_REGENERATE_GOLDEN=1 .venv/bin/python -m pytest tests/render

then review the diff of tests/render/golden/ before committing it.
"""

from __future__ import annotations

import os

import pytest

from newsletter.render import build_issue
from newsletter.tokens import fixed_clock
from tests.support.render import RecipientFields, personalise

# Read at import: the autouse isolated_env fixture clears NEWSLETTER_* before each test.
REGENERATE = os.environ.get("NEWSLETTER_REGENERATE_GOLDEN") == "1"

CASES = [
    ("2026-09", "all"),
    ("2026-10", "all"),
    ("2026-10", "s2"),
    ("2026-11", "all"),
    ("2026-11", "s1+s3"),
    ("2026-11", "teaser"),
]
RECIPIENT = RecipientFields(
    email="sam.reader@example.org",
    subscriber_id=1042,
    name="Sam Reader",
    topics=("alliance-and-therapeutic-relationship", "training"),
)


@pytest.mark.parametrize(("month", "name"), CASES)
def test_golden(kit, make_settings, month, name):
    settings = make_settings(no_match_policy="teaser")
    built = build_issue(kit.sample_issue(month), settings)
    variant = built.by_name(name)
    with fixed_clock(kit.FIXED_TIME):
        msg = personalise(variant, RECIPIENT, settings)
    for suffix, got in (("html", msg.html), ("txt", msg.text)):
        path = kit.GOLDEN / f"{month}-{name}.{suffix}"
        if REGENERATE:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(got, "utf-8")
            continue
        assert path.exists(), f"{path} missing: run NEWSLETTER_REGENERATE_GOLDEN=1 pytest"
        assert got == path.read_text("utf-8"), (
            f"{path.name} differs; if the change is intended, regenerate with "
            "NEWSLETTER_REGENERATE_GOLDEN=1 .venv/bin/python -m pytest tests/render"
        )
