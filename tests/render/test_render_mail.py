"""One-off emails (confirm, preferences link, welcome, note to the author) in the digest's
layout: both parts render, say what they must, wrap at 72 columns and hold no marker."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from newsletter.errors import MissingSettingError
from newsletter.render import MAILS, RenderedMail, TemplateError, render_mail
from newsletter.render.prepared import find_markers, marker
from newsletter.render.templates import default_templates_dir
from newsletter.render.text import WIDTH

BASE = "https://news.example.org"
TOKEN = "eyJ2IjoxLCJwIjoiY29uZmlybSIsImkiOjEwNDJ9.c2lnbmF0dXJlLW9mLXRoZS10b2tlbi1hbmQtbW9yZQ"
CONFIRM_URL = f"{BASE}/confirm/{TOKEN}"
PREFERENCES_URL = f"{BASE}/preferences/{TOKEN}"
UNSUBSCRIBE_URL = f"{BASE}/unsubscribe/{TOKEN}"
ARCHIVE_URL = f"{BASE}/archive"
NAME = "Psychotherapy Research Digest"
LONG_COMMAND = (
    'newsletter schedule 2026-11 --at "YYYY-MM-DD HH:MM" '
    "--and-a-long-option-that-makes-this-line-wider-than-the-text-part=yes"
)
RECENT = [
    {
        "title": "Therapist Empathy and Client Outcome",
        "month_name": "October 2026",
        "url": f"{BASE}/archive/2026-10/therapist-empathy",
        "topics": ["Empathy", "Outcome"],
        "implications": "*Listen* first, then check your understanding with the client.",
    },
    {
        "title": "The Alliance Still Predicts Outcome",
        "month_name": "September 2026",
        "url": f"{BASE}/archive/2026-09/alliance",
        "topics": ["Alliance and Therapeutic Relationship"],
        "implications": "- Monitor the alliance\n- Repair ruptures early",
    },
]
FACTS = [
    ("sent", "1204"),
    ("skipped", "3 (no matching topic: 2, paused: 1)"),
    ("failed", "1"),
    ("waiting", "0 (refused for now; retried by `newsletter worker`)"),
]
COMMANDS = ["newsletter deliveries list 2026-11 --status failed", LONG_COMMAND]

SAMPLES: dict[str, tuple[str, dict]] = {
    "confirm": (
        f"Please confirm your subscription to {NAME}",
        {"name": "Ann", "email": "ann@example.org", "confirm_url": CONFIRM_URL, "valid_days": 7},
    ),
    "preferences_link": (
        f"Your link to manage {NAME}",
        {
            "name": "Ann",
            "email": "ann@example.org",
            "preferences_url": PREFERENCES_URL,
            "unsubscribe_url": UNSUBSCRIBE_URL,
        },
    ),
    "welcome": (
        f"Welcome to {NAME}",
        {
            "name": "Ann",
            "all_topics": False,
            "topic_names": ["Empathy", "Alliance and Therapeutic Relationship"],
            "recent": RECENT,
            "archive_url": ARCHIVE_URL,
            "preferences_url": PREFERENCES_URL,
            "unsubscribe_url": UNSUBSCRIBE_URL,
        },
    ),
    "author_note": (
        f"[{NAME}] 2026-11 sent: 1204 messages",
        {
            "title": "The send of 2026-11 has run",
            "paragraphs": [
                "The send of 2026-11 scheduled for 2026-11-03 08:00 Europe/Berlin has run.",
                "The SMTP server could not be reached: the send is paused and `newsletter "
                "worker` finishes it when the server answers.",
            ],
            "facts": FACTS,
            "commands": COMMANDS,
        },
    ),
}


def render(settings, mail: str, **changes) -> RenderedMail:
    subject, context = SAMPLES[mail]
    return render_mail(settings, mail, subject, {**context, **changes})


def flat(text: str) -> str:
    """The text part with its line wrapping undone, to look for whole sentences."""
    return " ".join(text.split())


def first_base_link(text: str) -> str:
    """The first link to base_url, as tests/web finds the link to follow."""
    found = re.search(re.escape(BASE) + r"/[^\s\"<>]+", text)
    assert found, text
    return found.group(0)


_VOID = {"area", "base", "br", "col", "hr", "img", "input", "link", "meta", "source", "wbr"}


class _Page(HTMLParser):
    """Collects links, title and meta tags, and checks that every element is closed."""

    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []
        self.problems: list[str] = []
        self.hrefs: list[str] = []
        self.metas: dict[str, str] = {}
        self.title = ""

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "a" and "href" in a:
            self.hrefs.append(a["href"])
        if tag == "meta" and "name" in a:
            self.metas[a["name"]] = a.get("content") or ""
        if tag not in _VOID:
            self.open.append(tag)

    def handle_endtag(self, tag):
        if tag in _VOID:
            return
        if not self.open or self.open[-1] != tag:
            self.problems.append(f"</{tag}> at {self.getpos()} closes {self.open[-1:]}")
            return
        self.open.pop()

    def handle_data(self, data):
        if self.open and self.open[-1] == "title":
            self.title += data


def parse(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    page.close()
    return page


def too_wide(mail: RenderedMail, commands: list[str] = ()) -> list[str]:
    """Lines of the text part wider than 72 columns that are not a URL or a command."""
    url = re.compile(r"(\[\d+\] )?https?://\S+")
    return [
        line
        for line in mail.text.splitlines()
        if len(line) > WIDTH
        and not url.fullmatch(line.strip())
        and not (line.startswith("    ") and line.strip() in commands)
    ]


@pytest.mark.parametrize("name", MAILS)
def test_every_mail_renders_in_the_layout(settings, name):
    mail = render(settings, name)
    assert (mail.name, mail.subject) == (name, SAMPLES[name][0])
    # HTML: a whole MJML page, in the digest's head, masthead and width.
    assert mail.html.startswith('<!doctype html><html lang="en"')
    page = parse(mail.html)
    assert page.problems == [] and page.open == []
    assert page.title == mail.subject
    assert page.metas.get("color-scheme") == "light dark"
    assert "prefers-color-scheme: dark" in mail.html
    assert 'class="masthead' in mail.html and NAME in mail.html
    assert "max-width:600px" in mail.html
    assert 'style="display:none;' in mail.html  # a preheader of its own
    for href in page.hrefs:
        assert href.startswith(BASE) or href.startswith("https://"), href
    # Nothing of the digest's own parts is left.
    for digest_only in ("View in your browser", "Your topics:", "Dear "):
        assert digest_only not in mail.html and digest_only not in mail.text
    # Text: the same masthead, wrapped at 72 columns but for URLs and commands.
    assert mail.text.startswith(NAME.upper() + "\n")
    assert "=" * WIDTH in mail.text
    assert too_wide(mail, COMMANDS) == []
    assert mail.text.endswith("\n") and not mail.text.endswith("\n\n")
    assert "\n\n\n" not in mail.text


@pytest.mark.parametrize("name", MAILS)
def test_no_marker_leaks(settings, name):
    mail = render(settings, name)
    for part in (mail.html, mail.text, mail.subject):
        assert find_markers(part) == []
        assert "@@nl" not in part


def test_confirm(settings):
    mail = render(settings, "confirm")
    sentences = [
        "Hello Ann,",
        f"please confirm that you want to receive {NAME} at",
        "The link is valid for 7 days. If you did not ask for this, ignore this email: you "
        "will not be subscribed and we will not write again.",
    ]
    for s in sentences:
        assert s in flat(mail.text)
        assert s in flat(mail.html)
    assert f"ann@example.org:\n\n{CONFIRM_URL}\n" in mail.text
    assert "<strong>ann@example.org</strong>:" in mail.html
    # tests/web follow the first link to base_url of the text part: it must be this one.
    assert first_base_link(mail.text) == CONFIRM_URL
    assert "Confirm my subscription" in mail.html
    assert CONFIRM_URL in parse(mail.html).hrefs
    # Not subscribed yet: no unsubscribe or preferences link, but the sender's address.
    for part in (mail.html, mail.text):
        assert "/unsubscribe/" not in part and "/preferences/" not in part
        assert "Exampletown EX1 2AB" in part
    assert {h for h in parse(mail.html).hrefs} == {CONFIRM_URL}


def test_confirm_without_a_name(settings):
    mail = render(settings, "confirm", name="")
    assert "\nHello,\n" in mail.text
    assert "<p>Hello,</p>" in mail.html


def test_preferences_link(settings):
    mail = render(settings, "preferences_link")
    sentences = [
        "Hello Ann,",
        f"here is your link to change your topics, pause or unsubscribe from {NAME}:",
        "Someone (probably you) asked for it on our web page. If it was not you, ignore this "
        "email: nothing has changed.",
    ]
    for s in sentences:
        assert s in flat(mail.text)
        assert s in flat(mail.html)
    assert first_base_link(mail.text) == PREFERENCES_URL
    assert "Manage your preferences" in mail.html
    assert f"Unsubscribe:\n{UNSUBSCRIBE_URL}\n" in mail.text
    hrefs = parse(mail.html).hrefs
    assert PREFERENCES_URL in hrefs and UNSUBSCRIBE_URL in hrefs
    assert "Sent to ann@example.org by Research Practice Network" in flat(mail.text)
    assert "Exampletown EX1 2AB" in mail.html and "Exampletown EX1 2AB" in mail.text


def test_welcome(settings):
    mail = render(settings, "welcome")
    text = flat(mail.text)
    assert mail.text.split("=" * WIDTH)[1].lstrip().startswith("Welcome, Ann!")
    assert "Welcome, Ann!" in mail.html
    intro = (
        f"Your subscription to {NAME} is confirmed. Once a month you will receive summaries "
        "of psychotherapy research on your topics: Empathy; Alliance and Therapeutic "
        "Relationship."
    )
    assert intro in text and intro in flat(mail.html)
    assert "here are recent summaries on your topics" in text
    hrefs = parse(mail.html).hrefs
    for r in RECENT:
        assert r["title"] in mail.html and r["title"] in mail.text
        assert r["month_name"] in mail.html and r["month_name"] in mail.text
        assert r["url"] in hrefs and r["url"] in mail.text
        for topic in r["topics"]:
            assert topic in mail.html and topic in mail.text
    # The practice implications, from Markdown.
    assert "<em>Listen</em> first" in mail.html
    assert "_Listen_ first" in mail.text
    assert "<li>Repair ruptures early</li>" in mail.html
    assert "- Repair ruptures early" in mail.text
    for url in (ARCHIVE_URL, PREFERENCES_URL, UNSUBSCRIBE_URL):
        assert url in hrefs and url in mail.text
    assert f"All past issues: {ARCHIVE_URL}" in text
    assert "All past issues" in mail.html
    for label in ("Change your topics or pause", "Unsubscribe"):
        assert label in mail.html and label in mail.text
    assert "Exampletown EX1 2AB" in mail.html and "Exampletown EX1 2AB" in mail.text


def test_welcome_all_topics_and_nothing_recent(settings):
    mail = render(settings, "welcome", name="", all_topics=True, topic_names=[], recent=[])
    for part in (flat(mail.text), flat(mail.html)):
        assert "research on every topic." in part
        assert "recent summaries" not in part
    assert "Welcome!" in mail.text and "Welcome!" in mail.html
    assert first_base_link(mail.text) == ARCHIVE_URL


def test_author_note(settings):
    mail = render(settings, "author_note")
    _, context = SAMPLES["author_note"]
    for part in (flat(mail.text), flat(mail.html)):
        assert context["title"] in part
        for p in context["paragraphs"]:
            assert p in part
    assert "Note for the author" in mail.html and "Note for the author" in mail.text
    # Facts: a two-column table in HTML, aligned "label: value" lines in text.
    for label, value in FACTS:
        assert re.search(rf"<th [^>]*>{label}</th><td [^>]*>{re.escape(value)}</td>", mail.html)
    assert "  sent:    1204\n  skipped: 3 (no matching topic: 2, paused: 1)\n" in mail.text
    # Commands: monospace boxes in HTML, whole lines indented by four spaces in text.
    for command in COMMANDS:
        assert f"{command}</pre>".replace('"', "&#34;") in mail.html
        assert f"\n    {command}\n" in mail.text
    assert 'class="code"' in mail.html
    assert f"Sent by {NAME} to its author" in flat(mail.text)
    assert f"Sent by {NAME} to its author" in mail.html
    assert "Exampletown" not in mail.text  # not a subscriber mail: no postal footer


def test_author_note_without_facts_or_commands(settings):
    mail = render(settings, "author_note", facts=[], commands=[])
    assert '<table class="facts"' not in mail.html and "<pre" not in mail.html
    assert "\n    " not in mail.text
    assert too_wide(mail) == []


def test_author_note_needs_no_postal_address(make_settings):
    # It may be what reports that the postal address is missing.
    settings = make_settings(postal_address="")
    assert "has run" in render(settings, "author_note").text
    for name in ("confirm", "preferences_link", "welcome"):
        with pytest.raises(MissingSettingError, match="postal_address"):
            render(settings, name)


@pytest.mark.parametrize("name", ["confirm", "preferences_link", "welcome"])
def test_names_are_escaped_in_html(settings, name):
    mail = render(settings, name, name="<b>Ann</b> & Co")
    assert "<b>Ann</b>" not in mail.html
    assert "&lt;b&gt;Ann&lt;/b&gt; &amp; Co" in mail.html
    assert "<b>Ann</b> & Co" in mail.text  # text is not HTML


def test_author_note_values_are_escaped_in_html(settings):
    mail = render(
        settings,
        "author_note",
        title="<i>2026-11</i> was NOT sent",
        paragraphs=["Problem: <script>alert(1)</script>"],
        facts=[("<b>", "<u>")],
        commands=["echo '<x>' && true"],
    )
    assert "<script>" not in mail.html and "&lt;script&gt;" in mail.html
    assert "<i>2026-11</i>" not in mail.html
    assert "&lt;b&gt;" in mail.html and "&lt;u&gt;" in mail.html
    assert "echo &#39;&lt;x&gt;&#39; &amp;&amp; true</pre>" in mail.html
    assert "    echo '<x>' && true\n" in mail.text


def test_long_values_wrap_in_text(settings):
    long_name = "Maximiliana Wolkenstein-Oberhausen von und zu Langenfeld-Hohenstein"
    mail = render(settings, "confirm", name=long_name, email="a.rather.long.address@example.org")
    assert too_wide(mail) == []
    assert first_base_link(mail.text) == CONFIRM_URL
    note = render(
        settings,
        "author_note",
        title="A title " * 15,
        facts=[("a long label for the value", "word " * 30)],
    )
    assert too_wide(note, COMMANDS) == []


def test_unknown_mail_or_missing_value_is_the_callers_bug(settings):
    with pytest.raises(ValueError, match="one of: confirm"):
        render_mail(settings, "goodbye", "Bye", {})
    with pytest.raises(ValueError, match="confirm_url, valid_days"):
        render_mail(settings, "confirm", "Confirm", {"name": "", "email": "a@example.org"})


def test_a_marker_in_the_context_is_refused(settings):
    with pytest.raises(TemplateError, match="first_name"):
        render(settings, "confirm", name=marker("first_name"))


@pytest.fixture
def own_templates(tmp_path, make_settings):
    """A project templates folder with an email/ folder of its own, and its settings."""
    folder = tmp_path / "templates"
    (folder / "email").mkdir(parents=True)
    return folder / "email", make_settings(templates_dir=str(folder))


def _copy(name: str, folder: Path) -> Path:
    path = folder / name
    path.write_text((default_templates_dir() / "email" / name).read_text())
    return path


def test_project_copy_wins(own_templates):
    folder, settings = own_templates
    path = _copy("confirm.txt.j2", folder)
    path.write_text(path.read_text().replace("The link is valid", "This link works"))
    mail = render(settings, "confirm")
    assert "This link works for 7 days" in flat(mail.text)
    assert "The link is valid for 7 days" in flat(mail.html)  # the default HTML


def test_template_error_gives_file_and_line(own_templates):
    folder, settings = own_templates
    path = _copy("welcome.mjml.j2", folder)
    lines = path.read_text().splitlines()
    lines.insert(12, "{{ no_such_value }}")
    path.write_text("\n".join(lines))
    with pytest.raises(TemplateError) as info:
        render(settings, "welcome")
    assert f"{path}:13:" in info.value.message
    assert "no_such_value" in info.value.message


def test_digest_fields_in_a_mail_template_are_an_error(own_templates):
    folder, settings = own_templates
    path = _copy("preferences_link.txt.j2", folder)
    start = "{% block content %}\n"
    path.write_text(path.read_text().replace(start, start + "{{ field.email }}\n"))
    with pytest.raises(TemplateError, match=r"preferences_link\.txt\.j2:\d+: 'field'") as info:
        render(settings, "preferences_link")
    assert "only in the digest" in info.value.hint


def test_old_layout_copy_without_blocks_says_what_to_add(own_templates):
    folder, settings = own_templates
    path = _copy("layout.txt.j2", folder)
    # As the layout was before it had blocks for the one-off emails to replace.
    blocks = {"{% block masthead_subtitle %}", "{% block greeting %}", "{% block footer %}"}
    lines = path.read_text().splitlines()
    path.write_text("\n".join(x for x in lines if x not in blocks | {"{% endblock %}"}))
    with pytest.raises(TemplateError) as info:
        render(settings, "confirm")
    assert f"{path}:" in info.value.message
    assert "greeting" in info.value.hint and "your copy of the layout" in info.value.hint


def _open(browser, tmp_path: Path, mail: RenderedMail, width: int, scheme: str = "light"):
    path = tmp_path / f"{mail.name}-{width}-{scheme}.html"
    path.write_text(mail.html, "utf-8")
    page = browser.new_page(viewport={"width": width, "height": 800}, color_scheme=scheme)
    page.goto(path.as_uri())
    return page


def _inside(page, locator, width: int) -> bool:
    box = locator.bounding_box()
    return locator.is_visible() and box["x"] >= 0 and box["x"] + box["width"] <= width


@pytest.mark.browser
@pytest.mark.parametrize("width", [375, 600])
def test_confirm_and_welcome_fit_phone_and_desktop(browser, tmp_path, settings, width):
    long_name = "Maximiliana Wolkenstein-Oberhausen"
    confirm = render(settings, "confirm", name=long_name, email="a.long.address@example.org")
    page = _open(browser, tmp_path, confirm, width)
    try:
        assert page.evaluate("document.scrollingElement.scrollWidth") <= width
        assert page.title() == confirm.subject
        button = page.get_by_role("link", name="Confirm my subscription")
        assert _inside(page, button, width)
        assert button.get_attribute("href") == CONFIRM_URL
        assert _inside(page, page.get_by_role("link", name=CONFIRM_URL), width)
    finally:
        page.close()
    welcome = render(settings, "welcome", name=long_name)
    page = _open(browser, tmp_path, welcome, width)
    try:
        assert page.evaluate("document.scrollingElement.scrollWidth") <= width
        for r in RECENT:
            assert _inside(page, page.get_by_role("link", name=r["title"]), width)
        assert page.get_by_text("Read the summary").count() == len(RECENT)
        for name in ("All past issues", "Unsubscribe"):
            assert _inside(page, page.get_by_role("link", name=name, exact=True), width)
    finally:
        page.close()


def _luminance(css: str) -> float:
    r, g, b = (int(x) / 255 for x in css[css.index("(") + 1 : -1].split(",")[:3])
    lin = [(c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4) for c in (r, g, b)]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def _contrast(page, selector: str) -> tuple[float, float]:
    """Contrast of the element's text against its nearest background, and that background."""
    fg, bg = page.evaluate(
        """(selector) => {
            const e = document.querySelector(selector);
            let el = e, bg = 'rgba(0, 0, 0, 0)';
            while (el && (bg === 'rgba(0, 0, 0, 0)' || bg === 'transparent')) {
                bg = getComputedStyle(el).backgroundColor; el = el.parentElement;
            }
            return [getComputedStyle(e).color, bg];
        }""",
        selector,
    )
    lf, lb = _luminance(fg), _luminance(bg)
    return (max(lf, lb) + 0.05) / (min(lf, lb) + 0.05), lb


@pytest.mark.browser
@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_readable_in_light_and_dark(browser, tmp_path, settings, scheme):
    confirm = render(settings, "confirm")
    note = render(settings, "author_note")
    page = _open(browser, tmp_path, confirm, 600, scheme)
    try:
        text, background = _contrast(page, ".card p")
        assert text >= 7 and (background < 0.1) == (scheme == "dark")
        button, _ = _contrast(page, ".button a")
        assert button >= 4.5
    finally:
        page.close()
    page = _open(browser, tmp_path, note, 600, scheme)
    try:
        for selector in ("h1", ".code", ".facts td", ".facts th"):
            contrast, background = _contrast(page, selector)
            assert contrast >= 4.5, selector
            assert (background < 0.1) == (scheme == "dark"), selector
    finally:
        page.close()
