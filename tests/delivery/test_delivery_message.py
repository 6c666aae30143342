"""Message assembly: what is sent is parsed back with the standard library's email parser."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import re
import time
from email.header import decode_header, make_header
from email.message import EmailMessage
from pathlib import Path

import dkim
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from newsletter.config import Settings, load_settings
from newsletter.content.parser import load_issue
from newsletter.delivery.dkimsign import DkimSigner, canonical_body
from newsletter.delivery.message import (
    ONE_CLICK,
    BadAddressError,
    HeaderInjectionError,
    MessageTemplate,
    MissingFieldError,
    OutgoingMessage,
    Recipient,
    assemble,
    assemble_test,
    assemble_values,
    build_message_template,
    message_id,
    qp_encode,
)
from newsletter.delivery.personalise import recipient_values
from newsletter.delivery.transports import open_transport
from newsletter.errors import ConfigError, NewsletterError
from newsletter.render import build_issue
from newsletter.render.build import BuiltIssue, Variant
from newsletter.render.prepared import PreparedPart
from newsletter.rules.links import page_url
from newsletter.rules.personal import FIELDS
from newsletter.rules.variants import VariantKey
from newsletter.tokens import fixed_clock
from tests.support.smtpserver import SmtpTestServer

REPO = Path(__file__).resolve().parents[2]
FIXED_TIME = 1_788_220_800  # tokens stamped at 2026-09-01 00:00 UTC

BASE = {
    "secret_key": "message-test-key, older-key",
    "base_url": "https://news.example.org",
    "postal_address": "1 Example Street; Exampletown",
    "sender_address": "digest@news.example.org",
    "sender_name": "Research Practice Network",
    "newsletter_name": "Psychotherapy Research Digest",
    "reply_to": "editor@news.example.org",
}

ALEX = Recipient(
    email="alex@example.net",
    subscriber_id=123,
    name="Alex Example",
    topics=("empathy", "depression-and-depressive-symptoms"),
)


def make_settings(**overrides: object) -> Settings:
    return load_settings(overrides={**BASE, **overrides}, environ={})


@pytest.fixture(scope="module")
def built() -> BuiltIssue:
    settings = make_settings(no_match_policy="teaser")
    return build_issue(load_issue(REPO / "issues" / "2026-10.md"), settings)


@pytest.fixture
def settings() -> Settings:
    return make_settings()


@pytest.fixture
def variant(built: BuiltIssue) -> Variant:
    return built.by_name("all")


@pytest.fixture
def template(variant: Variant, settings: Settings) -> MessageTemplate:
    return build_message_template(variant, settings, issue_month="2026-10")


def parse(data: bytes) -> EmailMessage:
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def parts(msg: EmailMessage) -> tuple[EmailMessage, EmailMessage]:
    assert msg.get_content_type() == "multipart/alternative"
    text, html = msg.iter_parts()
    return text, html


def decoded(part: EmailMessage) -> str:
    # MIME text is sent with CRLF line ends; the prepared parts use "\n".
    return part.get_content().replace("\r\n", "\n")


def body_lines(data: bytes) -> list[bytes]:
    return data.split(b"\r\n\r\n", 1)[1].split(b"\r\n")


def header_lines(data: bytes, field: str) -> list[bytes]:
    """The raw (folded) lines of header ``field``."""
    lines = data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    start = next(i for i, line in enumerate(lines) if line.startswith(field.encode() + b":"))
    end = start + 1
    while end < len(lines) and lines[end][:1] in (b" ", b"\t"):
        end += 1
    return lines[start:end]


def assert_wire_format(data: bytes) -> None:
    """CRLF everywhere, 7-bit, no line over 998 octets, QP lines within 76, none "."-led.

    No line starting with "." is what lets the SMTP transport skip dot-stuffing
    (``OutgoingMessage.canonical``).
    """
    assert not data.startswith(b".") and b"\r\n." not in data
    assert b"\n" not in data.replace(b"\r\n", b"")
    assert b"\r" not in data.replace(b"\r\n", b"")
    assert data.isascii()
    header_block = data.split(b"\r\n\r\n", 1)[0]
    for line in header_block.split(b"\r\n"):
        assert len(line) <= 998
    for line in body_lines(data):
        assert len(line) <= 76, line
        # Relays may strip whitespace at the end of a line: QP must encode it (=20).
        assert not line.endswith((b" ", b"\t")), line
    # The body is already in DKIM's relaxed canonical form, which is what lets the signer
    # hash it as it is: no tab, no two blanks together, one line break at the end.
    body = data.split(b"\r\n\r\n", 1)[1]
    assert b"\t" not in body and b"  " not in body, body
    assert canonical_body(body) == body


# --------------------------------------------------------------------------- headers


def test_every_header_is_present_and_correct(
    template: MessageTemplate, variant: Variant, settings: Settings
) -> None:
    before = time.time()
    out = assemble(template, ALEX)
    msg = parse(out.data)
    assert isinstance(out, OutgoingMessage)
    assert out.envelope_to == "alex@example.net" and out.recipients == ("alex@example.net",)
    assert out.envelope_from == "digest@news.example.org"

    [sender] = msg["From"].addresses
    assert (sender.display_name, sender.addr_spec) == (
        "Psychotherapy Research Digest",  # the newsletter's one name, not sender_name
        "digest@news.example.org",
    )
    [to] = msg["To"].addresses
    assert (to.display_name, to.addr_spec) == ("Alex Example", "alex@example.net")
    assert msg["Subject"] == variant.subject
    assert msg["Reply-To"].addresses[0].addr_spec == "editor@news.example.org"
    assert msg["MIME-Version"] == "1.0"
    assert msg["List-Id"] == (
        '"Psychotherapy Research Digest" <psychotherapy-research-digest.news.example.org>'
    )
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click" == ONE_CLICK
    assert msg["Message-ID"] == out.message_id
    assert re.fullmatch(r"<2026-10\.123\.[0-9a-f]{16}@news\.example\.org>", out.message_id)
    sent = msg["Date"].datetime
    assert sent.utcoffset().total_seconds() == 0
    assert before - 1 <= sent.timestamp() <= time.time() + 1
    assert msg.get_param("boundary") == template.boundary
    assert "X-Original-To" not in msg


def test_list_unsubscribe_is_the_bodys_https_link(template: MessageTemplate) -> None:
    msg = parse(assemble(template, ALEX).data)
    header = msg["List-Unsubscribe"]
    [url] = re.findall(r"<([^>]+)>", header)
    assert url.startswith("https://news.example.org/unsubscribe/")
    text, html = parts(msg)
    assert url in decoded(text)
    assert f'href="{url}"' in decoded(html)


def test_parts_are_utf8_quoted_printable(template: MessageTemplate) -> None:
    text, html = parts(parse(assemble(template, ALEX).data))
    for part, kind in ((text, "text/plain"), (html, "text/html")):
        assert part.get_content_type() == kind
        assert part.get_content_charset() == "utf-8"
        assert part["Content-Transfer-Encoding"] == "quoted-printable"


@pytest.mark.parametrize("name", ["Zoë O'Brien & <Co>", "Ann  Marie\tLee", "  Bo   Li "])
def test_decoded_parts_equal_the_filled_variant(
    built: BuiltIssue, settings: Settings, name: str
) -> None:
    # Readers see exactly the rendered text: the encoding that keeps the body relaxed-
    # canonical (tabs as =09, every second blank of a run as =20) decodes back to it.
    recipient = dataclasses.replace(ALEX, name=name)
    for variant in built.variants.values():
        template = build_message_template(variant, settings, issue_month="2026-10")
        with fixed_clock(FIXED_TIME):
            out = assemble(template, recipient)
            values = recipient_values(
                settings, recipient, variant.web_view_url, variant.summary_topics
            )
        text, html = parts(parse(out.data))
        assert decoded(text) == variant.text.fill(values), variant.name
        assert decoded(html) == variant.html.fill(values), variant.name
        assert_wire_format(out.data)


def test_message_id_is_stable_per_issue_and_subscriber(
    template: MessageTemplate, variant: Variant, settings: Settings
) -> None:
    first = assemble(template, ALEX)
    again = assemble(template, dataclasses.replace(ALEX, name="Renamed"))
    assert first.message_id == again.message_id
    # Another template of the same issue (a retry after a restart) gives the same ID.
    rebuilt = build_message_template(variant, settings, issue_month="2026-10")
    assert assemble(rebuilt, ALEX).message_id == first.message_id
    other = assemble(template, dataclasses.replace(ALEX, subscriber_id=124))
    assert other.message_id != first.message_id
    november = build_message_template(variant, settings, issue_month="2026-11")
    assert message_id(november, 123) != first.message_id
    # Not guessable without the key: another key gives another ID.
    other_key = make_settings(secret_key="some-other-key")
    other_template = build_message_template(variant, other_key, issue_month="2026-10")
    assert message_id(other_template, 123) != first.message_id
    assert "message-test-key" not in first.message_id


def test_recipient_without_subscriber_id_is_refused(template: MessageTemplate) -> None:
    with pytest.raises(TypeError, match="subscriber_id"):
        assemble(template, dataclasses.replace(ALEX, subscriber_id=None))


@pytest.mark.parametrize(
    "name",
    [
        "Zoë Ñúñez-Łukasz",
        "山田 太郎",
        "Dr. Ana Müller, PhD",
        'John "Johnny" O\'Brien \\ Jr. (therapist); <x>',
        "A" * 120,
        "Ada " * 60 + "Lovelace",
        "Looks =?utf-8?q?encoded?= but is not",
        "😀 emoji 😀",
    ],
)
def test_names_round_trip_in_to(template: MessageTemplate, name: str) -> None:
    out = assemble(template, dataclasses.replace(ALEX, name=name))
    [to] = parse(out.data)["To"].addresses
    assert to.display_name == name
    assert to.addr_spec == "alex@example.net"
    assert_wire_format(out.data)


def test_long_non_ascii_names_are_split_into_encoded_words(template: MessageTemplate) -> None:
    name = " ".join(["Ölçüm"] * 20 + ["Ende"])
    out = assemble(template, dataclasses.replace(ALEX, name=name))
    assert all(len(line) <= 78 for line in header_lines(out.data, "To"))
    # RFC 2047 decoding (whitespace between encoded words is dropped); Python's address
    # parser would insert a space between the words instead, so decode the raw header.
    raw = email.message_from_bytes(out.data, policy=email.policy.compat32)["To"]
    assert raw.count("=?utf-8?b?") > 1
    decoded_to = str(make_header(decode_header(raw)))
    assert decoded_to == f"{name} <alex@example.net>"


def test_control_characters_in_names_become_spaces(template: MessageTemplate) -> None:
    for name in ("Tab\there", "Form\x0cfeed", "Zoë\x1bEsc", "Del\x7fete"):
        out = assemble(template, dataclasses.replace(ALEX, name=name))
        shown = parse(out.data)["To"].addresses[0].display_name
        assert shown == re.sub(r"[\x00-\x1f\x7f]", " ", name)


def test_no_name_gives_a_bare_address(template: MessageTemplate) -> None:
    for name in (None, ""):
        out = assemble(template, dataclasses.replace(ALEX, name=name))
        [to] = parse(out.data)["To"].addresses
        assert (to.display_name, to.addr_spec) == ("", "alex@example.net")


@pytest.mark.parametrize(
    "subject",
    [
        "Empathy, ruptures and CBT: the October digest",
        "Empathie, Brüche und KVT – die Oktober-Ausgabe für Praktiker·innen",
        "Une très longue ligne d'objet qui dépasse largement la limite de soixante-dix-huit",
        "An ASCII subject long enough that it has to be folded onto a second header line",
        "=?utf-8?q?not_an_encoded_word?=",
    ],
)
@pytest.mark.parametrize("test", [False, True])
def test_subjects_round_trip(
    variant: Variant, settings: Settings, subject: str, test: bool
) -> None:
    template = build_message_template(
        dataclasses.replace(variant, subject=subject), settings, issue_month="2026-10", test=test
    )
    out = assemble(template, ALEX)
    assert parse(out.data)["Subject"] == ("[TEST] " if test else "") + subject
    assert all(len(line) <= 78 for line in header_lines(out.data, "Subject"))


def test_non_ascii_sender_and_newsletter_names(variant: Variant) -> None:
    settings = make_settings(sender_name="Réseau Recherche–Pratique", newsletter_name="Psy Café")
    out = assemble(build_message_template(variant, settings, issue_month="2026-10"), ALEX)
    msg = parse(out.data)
    assert msg["From"].addresses[0].display_name == "Psy Café"
    assert msg["List-Id"] == "Psy Café <psy-caf.news.example.org>"


def test_reply_to_only_when_configured(variant: Variant) -> None:
    out = assemble(
        build_message_template(variant, make_settings(reply_to=""), issue_month="2026-10"),
        ALEX,
    )
    assert "Reply-To" not in parse(out.data)


def test_one_click_headers_follow_base_url(variant: Variant) -> None:
    settings = make_settings(base_url="http://127.0.0.1:8000")
    msg = parse(
        assemble(build_message_template(variant, settings, issue_month="2026-10"), ALEX).data
    )
    assert msg["List-Unsubscribe-Post"] == ONE_CLICK
    assert msg["List-Unsubscribe"].startswith("<http://127.0.0.1:8000/unsubscribe/")


def test_mailto_unsubscribe_is_added_when_set(variant: Variant, settings: Settings) -> None:
    template = build_message_template(
        variant, settings, issue_month="2026-10", unsubscribe_mailto="leave@news.example.org"
    )
    with fixed_clock(FIXED_TIME):
        out = assemble(template, ALEX)
        token = recipient_values(settings, ALEX, variant.web_view_url)["unsubscribe_token"]
    header = parse(out.data)["List-Unsubscribe"]
    assert re.findall(r"<([^>]+)>", header) == [
        page_url(settings.base_url, "unsubscribe", token),
        f"mailto:leave@news.example.org?subject=unsubscribe%20{token}",
    ]
    assert_wire_format(out.data)


# --------------------------------------------------------------------------- injection


@pytest.mark.parametrize(
    "recipient",
    [
        dataclasses.replace(ALEX, name="Alex\r\nBcc: victim@example.com"),
        dataclasses.replace(ALEX, name="Alex\nX-Evil: 1"),
        dataclasses.replace(ALEX, name="Alex\rX"),
        dataclasses.replace(ALEX, name="Alex\0"),
        dataclasses.replace(ALEX, email="alex@example.net\r\nBcc: victim@example.com"),
        dataclasses.replace(ALEX, email="alex@example.net\n"),
    ],
)
def test_line_breaks_in_recipient_values_are_refused(
    template: MessageTemplate, recipient: Recipient
) -> None:
    with pytest.raises(HeaderInjectionError) as info:
        assemble(template, recipient)
    assert isinstance(info.value, NewsletterError) and info.value.hint


@pytest.mark.parametrize("subject", ["October\r\nBcc: victim@example.com", "A\nB", "A\0"])
def test_line_breaks_in_the_subject_are_refused(
    variant: Variant, settings: Settings, subject: str
) -> None:
    with pytest.raises(HeaderInjectionError):
        build_message_template(
            dataclasses.replace(variant, subject=subject), settings, issue_month="2026-10"
        )


@pytest.mark.parametrize(
    "address", ["alex example.net", "alex", "<alex@example.net>", "a,b@example.net", "zoë@x.org"]
)
def test_addresses_that_are_not_plain_are_refused(template: MessageTemplate, address: str) -> None:
    with pytest.raises(BadAddressError):
        assemble(template, dataclasses.replace(ALEX, email=address))


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("sender_address", "digest@news.example.org\r\nBcc: x@y.z"),
        ("sender_address", "not an address"),
        ("reply_to", "editor@example.org\nBcc: x@y.z"),
        ("dev_redirect", "stage @example.org"),
        ("sender_name", "Digest\r\nBcc: x@y.z"),
        ("newsletter_name", "Digest\r\nBcc: x@y.z"),
    ],
)
def test_bad_settings_are_config_errors(variant: Variant, setting: str, value: str) -> None:
    with pytest.raises(ConfigError, match=setting) as info:
        build_message_template(variant, make_settings(**{setting: value}), issue_month="2026-10")
    assert info.value.hint


def test_missing_sender_address_names_the_setting(variant: Variant) -> None:
    with pytest.raises(ConfigError, match="sender_address"):
        build_message_template(variant, make_settings(sender_address=""), issue_month="2026-10")


def test_values_given_directly_are_checked(template: MessageTemplate) -> None:
    values = {name: "x" for name in FIELDS}
    with pytest.raises(HeaderInjectionError):
        assemble_values(template, ALEX, "<id@x>\r\nBcc: a@b.c", values)
    for bad in ("a\r\nBcc: c@d.e", "<b>", "a b"):
        with pytest.raises(ValueError, match="not a signed token"):
            assemble_values(template, ALEX, "<id@x>", {**values, "unsubscribe_token": bad})
    with pytest.raises(MissingFieldError):
        assemble_values(template, ALEX, "<id@x>", {"unsubscribe_token": "t"})


# --------------------------------------------------------------------------- redirect, tests


def test_dev_redirect_changes_only_the_envelope(variant: Variant) -> None:
    settings = make_settings(dev_redirect="staging@example.org")
    out = assemble(build_message_template(variant, settings, issue_month="2026-10"), ALEX)
    msg = parse(out.data)
    assert out.envelope_to == "staging@example.org"
    assert msg["X-Original-To"] == "alex@example.net"
    assert msg["To"].addresses[0].addr_spec == "alex@example.net"


def test_send_test_messages_get_fresh_message_ids(variant: Variant, settings: Settings) -> None:
    template = build_message_template(variant, settings, issue_month="2026-10", test=True)
    one = assemble_test(template, "author@example.org", name="The Author")
    two = assemble_test(template, "author@example.org")
    assert one.message_id != two.message_id
    for out in (one, two):
        assert re.fullmatch(r"<test\.[0-9a-f]{20}@news\.example\.org>", out.message_id)
    msg = parse(one.data)
    assert msg["Subject"] == "[TEST] " + variant.subject
    assert msg["To"].addresses[0].display_name == "The Author"
    assert out.envelope_to == "author@example.org"
    text, _html = parts(msg)
    assert "Dear The," in decoded(text)  # the greeting uses the first name
    with pytest.raises(BadAddressError):
        assemble_test(template, "not an address")


def test_send_test_can_preview_one_subscribers_values(variant: Variant, settings: Settings) -> None:
    template = build_message_template(variant, settings, issue_month="2026-10", test=True)
    with fixed_clock(FIXED_TIME):
        out = assemble_test(template, "author@example.org", recipient=ALEX)
        values = recipient_values(settings, ALEX, variant.web_view_url, variant.summary_topics)
    msg = parse(out.data)
    assert msg["To"].addresses[0].addr_spec == "author@example.org"
    assert decoded(parts(msg)[0]) == variant.text.fill(values)


# --------------------------------------------------------------------------- quoted-printable


@pytest.mark.parametrize(
    ("text", "encoded"),
    [
        ("a = b", "a =3D b"),
        ("trailing \nspace", "trailing=20\r\nspace"),
        ("tab\t\nx", "tab=09\r\nx"),
        ("a\tb", "a=09b"),
        ("a  b", "a =20b"),
        ("x     y", "x =20 =20 y"),
        ("ends  ", "ends =20"),
        ("end ", "end=20"),
        ("café", "caf=C3=A9"),
        (".dot\n.", "=2Edot\r\n=2E"),
        ("x" * 80, "x" * 75 + "=\r\n" + "x" * 5),
        ("a\rb", "a=0Db"),
    ],
)
def test_qp_encode_edge_cases(text: str, encoded: str) -> None:
    assert qp_encode(text) == encoded


def test_qp_never_splits_an_escape_or_a_character() -> None:
    encoded = qp_encode("x" * 73 + "€€")
    first, second = encoded.split("=\r\n")
    assert first == "x" * 73 and second == "=E2=82=AC=E2=82=AC"
    assert qp_encode("é", ends_part=False) == "=C3=A9"
    assert qp_encode("a ", ends_part=False) == "a "  # a soft break will protect it


SEGMENT_ALPHABET = st.sampled_from(
    ["a", "Z", " ", "\t", "=", "\n", ".", "From ", "é", "€", "😀", "=3D", "-", "x" * 40, "\r"]
)
segment_text = st.lists(SEGMENT_ALPHABET, max_size=40).map("".join)
token_text = st.text("ABCxyz019-_.=", max_size=200)
value_text = st.one_of(
    st.text(max_size=200),
    st.lists(SEGMENT_ALPHABET, max_size=60).map("".join),
)


@hsettings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    data=st.data(),
    names=st.lists(st.sampled_from(FIELDS), max_size=6),
)
def test_any_segments_and_values_decode_exactly(
    data: st.DataObject, names: list[str], settings: Settings
) -> None:
    segments = tuple(data.draw(segment_text) for _ in range(len(names) + 1))
    values = {
        name: data.draw(token_text if name.endswith("_token") else value_text) for name in FIELDS
    }
    text = PreparedPart("text", segments, tuple(names))
    html = PreparedPart("html", tuple(reversed(segments)), tuple(reversed(names)))
    variant = Variant(
        key=VariantKey.teaser(1),
        summaries=(),
        subject="S",
        web_view_url="https://news.example.org/archive/2026-10",
        html=html,
        text=text,
    )
    template = build_message_template(variant, settings, issue_month="2026-10")
    out = assemble_values(template, ALEX, "<p@x>", values)
    assert_wire_format(out.data)
    got_text, got_html = parts(parse(out.data))
    assert decoded(got_text) == text.fill(values)
    assert decoded(got_html) == html.fill(values)


def test_a_text_fewer_line_in_an_html_part_is_escaped_like_the_preview(settings: Settings) -> None:
    # Only the HTML "fewer emails" lines are markup; a text one in an HTML part is a value
    # like any other (found by the property test above: "'" came out unescaped).
    names = ("fewer_text_3", "fewer_html_1")
    html = PreparedPart("html", ("<p>", " ", "</p>"), names)
    text = PreparedPart("text", ("a ", " b", ""), names)
    variant = Variant(
        key=VariantKey.teaser(1),
        summaries=(),
        subject="S",
        web_view_url="https://news.example.org/archive/2026-10",
        html=html,
        text=text,
    )
    values = {name: "" for name in FIELDS} | {"fewer_text_3": "'<x>", "fewer_html_1": "<a>"}
    template = build_message_template(variant, settings, issue_month="2026-10")
    got_text, got_html = parts(parse(assemble_values(template, ALEX, "<p@x>", values).data))
    assert decoded(got_html) == "<p>&#x27;&lt;x&gt; <a></p>" == html.fill(values)
    assert decoded(got_text) == "a '<x> b<a>" == text.fill(values)


def test_boundary_does_not_occur_in_the_content(template: MessageTemplate) -> None:
    data = assemble(template, ALEX).data
    assert data.count(template.boundary.encode()) == 4  # header, 2 delimiters, close
    assert data.endswith(f"--{template.boundary}--\r\n".encode())


# --------------------------------------------------------------------------- DKIM and SMTP


def test_assembled_message_signs_and_verifies(
    template: MessageTemplate, dkim_key: tuple[Path, bytes]
) -> None:
    key, record = dkim_key

    def dns(name: bytes | str, timeout: int = 5) -> bytes | None:
        name = name.decode() if isinstance(name, bytes) else name
        return record if name.rstrip(".") == "oct2026._domainkey.news.example.org" else None

    out = assemble(template, dataclasses.replace(ALEX, name="Zoë Ñúñez"))
    signed = DkimSigner.from_key_file("news.example.org", "oct2026", key).sign(out.data)
    assert dkim.verify(signed, dnsfunc=dns)
    assert not dkim.verify(signed.replace(b"Zo", b"Zu", 1), dnsfunc=dns)


def test_sent_through_a_real_smtp_server(smtp_server: SmtpTestServer, variant: Variant) -> None:
    settings = make_settings(smtp_url=smtp_server.url)
    template = build_message_template(variant, settings, issue_month="2026-10")
    recipient = dataclasses.replace(ALEX, name="Zoë Ñúñez")
    with fixed_clock(FIXED_TIME):
        out = assemble(template, recipient)
        values = recipient_values(settings, recipient, variant.web_view_url, variant.summary_topics)
    with open_transport(settings) as transport:
        outcome = transport.send(out)
    assert outcome.sent
    [got] = smtp_server.messages
    assert got.mail_from == "digest@news.example.org"
    assert got.rcpt_tos == ["alex@example.net"]
    assert got.data.replace(b"\r\n", b"\n") == out.data.replace(b"\r\n", b"\n")
    msg = got.parsed()
    assert msg["Message-ID"] == out.message_id
    assert msg["To"].addresses[0].display_name == "Zoë Ñúñez"
    text, html = parts(msg)
    assert decoded(text) == variant.text.fill(values)
    assert decoded(html) == variant.html.fill(values)


def test_verp_envelope_sender_names_the_delivery_when_a_bounce_address_is_set(
    variant: Variant, template: MessageTemplate
) -> None:
    from newsletter.tokens import read_verp_tag

    assert assemble(template, ALEX).envelope_from == "digest@news.example.org"  # off: sender
    on = make_settings(bounce_address="bounces@news.example.org")
    msg = assemble(build_message_template(variant, on, issue_month="2026-10"), ALEX)
    local, domain = msg.envelope_from.split("@")
    assert domain == "news.example.org" and local.startswith("bounces+")
    tag = local.split("+", 1)[1]
    assert tag == tag.lower() and len(msg.envelope_from) < 64
    assert read_verp_tag(on, tag) == ("2026-10", ALEX.subscriber_id)
    assert read_verp_tag(on, tag.upper()) == ("2026-10", ALEX.subscriber_id)  # case lost
    # A forged or mangled tag names nobody.
    month, sid, mac = tag.split("-")
    assert read_verp_tag(on, f"{month}-{sid + '1'}-{mac}") is None
    assert read_verp_tag(on, f"{month}-{sid}-{'0' * len(mac)}") is None
    assert read_verp_tag(on, "garbage") is None and read_verp_tag(on, "--") is None
    other_key = make_settings(bounce_address="b@x.org", secret_key="another key")
    assert read_verp_tag(other_key, tag) is None
    # Rotated keys: a tag made under the old key still reads.
    rotated = make_settings(secret_key="new key, " + on.secret_key)
    assert read_verp_tag(rotated, tag) == ("2026-10", ALEX.subscriber_id)


def test_a_value_in_pieces_encodes_to_the_same_text_as_a_whole() -> None:
    """The "fewer emails" lines are encoded piece by piece (the pieces' encodings are
    cached); the QP still decodes to the whole value, in lines of at most 76 characters."""
    import quopri

    from newsletter.delivery.message import encode_slotted, encode_value
    from newsletter.delivery.personalise import SlottedValue

    token = "eyJ0IjoidG9waWMiLCJzIjo0Mn0." + "A" * 43
    pieces = (
        'Fewer emails on: <a href="https://news.example.org/topic/',
        '?slug=therapist-factors" style="color:#6b7885;">Therapist Factors</a> &middot; '
        '<a href="https://news.example.org/topic/',
        '?slug=training" style="color:#6b7885;">Training</a>  two  spaces\tand a tab ',
    )
    value = SlottedValue(pieces, token)
    encoded = encode_slotted(value)
    assert quopri.decodestring(encoded).decode() == str(value) == token.join(pieces)
    assert quopri.decodestring(encode_value(str(value))) == quopri.decodestring(encoded)
    assert all(len(line) <= 76 for line in encoded.split(b"\r\n"))
