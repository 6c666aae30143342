"""Bounce reports for the tests that read them back: a real send, then its bounces.

:func:`send_sample` runs a real send (aiosmtpd) of the sample issue to the sample people
with a VERP bounce address. :func:`fill_report` fills one template of
``tests/fixtures/bounces/`` (formats of real servers) with that send's own Message-IDs
and VERP addresses. :data:`REPORTS` is one report of each kind, with what reading it must
do; every mailbox test (Maildir, mbox, IMAP, SMTP in) uses them.
"""

from __future__ import annotations

from pathlib import Path

from newsletter.services import App, subscribers
from newsletter.tokens import verp_address, verp_tag
from tests.support.delivery_runs import ledger_rows, settings_of
from tests.support.services import (
    SAMPLE_MONTH,
    SAMPLE_PEOPLE,
    WorkerOptions,
    add_people,
    plan_issue_send,
    run_worker,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "bounces"
MONTH = SAMPLE_MONTH
BOUNCES = "bounces@news.example.org"

#: (template, the failed address it names, sent back to its VERP address?)
REPORTS = [
    ("dsn_postfix_user_unknown.eml", "pdt@example.org", True),  # by VERP
    ("dsn_mailbox_full.eml", "efficacy@example.org", False),  # by Message-ID
    ("exim_failed_recipients.eml", "training@example.org", False),  # by address
    ("arf_complaint.eml", "mixed@example.org", False),
    ("dsn_delayed_warning.eml", "all@example.org", True),
    ("autoreply_vacation.eml", "all@example.org", True),
    ("forged_verp.eml", "nobody@example.org", False),
    ("garbage.eml", "nobody@example.org", False),
]
#: What reading all of REPORTS once must report and do.
RECORDED = 4
SET_ASIDE = {"autoreply": 1, "unknown": 2, "warning": 1}
MARKED = ["mixed@example.org", "pdt@example.org", "training@example.org"]
STATUS_AFTER = {
    "pdt@example.org": "bounced",  # DSN 5.1.1, found by its VERP address
    "efficacy@example.org": "active",  # mailbox full: one soft bounce
    "training@example.org": "bounced",  # Exim's own format, found by address
    "mixed@example.org": "unsubscribed",  # a complaint
    "all@example.org": "active",  # a delay warning and an auto-reply
    "nomatch@example.org": "active",
}


def send_sample(project: Path) -> Path:
    """Send the sample issue to the sample people from ``project`` (a ``send_project``),
    with ``bounce_address`` set, so reports can name real deliveries."""
    with open(project / "newsletter.toml", "a") as f:
        f.write(f'bounce_address = "{BOUNCES}"\n')
    settings = settings_of(project)
    add_people(settings, {a: topics for a, (topics, _) in SAMPLE_PEOPLE.items()})
    plan_issue_send(settings, MONTH)
    run_worker(settings, WorkerOptions(months=[MONTH]))
    return project


def fill_report(project: Path, fixture: str, rcpt: str, *, verp: bool, n: int) -> bytes:
    """The template ``fixture`` about ``rcpt``, sent back to its VERP address if
    ``verp``; ``n`` makes its Message-ID unique."""
    settings = settings_of(project)
    with App(settings) as app:
        sub_id = subscribers.get_subscriber(app, rcpt).id if rcpt in SAMPLE_PEOPLE else 1
    row = ledger_rows(settings, MONTH).get(rcpt)
    to = verp_address(BOUNCES, verp_tag(settings, MONTH, sub_id)) if verp else BOUNCES
    text = (FIXTURES / fixture).read_bytes().decode("latin-1")
    for key, value in {
        "{BOUNCE_TO}": to,
        "{RCPT}": rcpt,
        "{MESSAGE_ID}": (row.message_id if row else "<none@example.org>") or "",
        "{N}": str(n),
    }.items():
        text = text.replace(key, value)
    return text.encode("latin-1")


def all_reports(project: Path) -> list[bytes]:
    """Every report of :data:`REPORTS`, filled, in order."""
    return [
        fill_report(project, fixture, rcpt, verp=verp, n=n)
        for n, (fixture, rcpt, verp) in enumerate(REPORTS)
    ]
