"""``rules.mail_records``: reading SPF, DKIM and DMARC TXT records (pure)."""

from __future__ import annotations

import pytest

from newsletter.rules.mail_records import (
    dkim_public_key,
    dmarc_policy,
    dmarc_records,
    spf_records,
    tags,
)


def test_tags_of_a_record() -> None:
    assert tags(" v=DKIM1 ; K=rsa; p=AB CD==;junk;; t=y; k=ed25519") == {
        "v": "DKIM1",
        "k": "rsa",
        "p": "AB CD==",
        "t": "y",
    }


def test_spf_records_are_those_starting_v_spf1() -> None:
    txt = ["v=spf1 -all", "V=SPF1 mx", "v=spf10 a", "verification=v=spf1", "v=spf1"]
    assert spf_records(txt) == ["v=spf1 -all", "V=SPF1 mx", "v=spf1"]


@pytest.mark.parametrize(
    ("record", "policy"),
    [
        ("v=DMARC1; p=reject", "reject"),
        ("v=DMARC1;p=None;rua=mailto:a@b.c", "none"),
        ("v=DMARC1; p=quarantine; sp=none", "quarantine"),
        ("v=DMARC1; rua=mailto:a@b.c", None),
        ("v=DMARC1; p=maybe", None),
    ],
)
def test_dmarc_policy(record: str, policy: str | None) -> None:
    assert dmarc_records([record, "other"]) == [record]
    assert dmarc_policy(record) == policy


def test_dkim_public_key() -> None:
    assert dkim_public_key("v=DKIM1; k=rsa; p=MIIB Ij AN") == "MIIBIjAN"
    assert dkim_public_key("v=DKIM1; k=rsa; p=") == ""
    assert dkim_public_key("v=DKIM1; k=rsa") is None
