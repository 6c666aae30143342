"""Opening an email fetches nothing from another host: no web fonts, stylesheets or scripts
(a font from Google Fonts would tell Google every reader's IP address)."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from newsletter.render import MAILS, TemplateError, build_issue, render_mail
from newsletter.render.templates import default_templates_dir
from tests.render.test_render_mail import SAMPLES
from tests.support.render import RecipientFields, personalise

RECIPIENT = RecipientFields("sam@example.org", subscriber_id=7, name="Sam", topics=("training",))
REMOTE = re.compile(r"^\s*(?:https?:)?//", re.IGNORECASE)


class _Loads(HTMLParser):
    """What a mail program would fetch by itself on opening the HTML (links a reader clicks
    are not fetched; images are the author's own content and not in the sample issues)."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "link":
            self.found.append(f"<link href={values.get('href')}>")
        elif tag == "script":
            self.found.append(f"<script src={values.get('src')}>")
        elif tag in ("img", "iframe", "object", "embed") and REMOTE.match(values.get("src") or ""):
            self.found.append(f"<{tag} src={values.get('src')}>")
        style = values.get("style") or ""
        if "url(" in style.lower():
            self.found.append(f"style {style}")
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        if tag == "style":
            self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            lowered = data.lower()
            for word in ("@import", "@font-face", "url("):
                if word in lowered:
                    self.found.append(f"style {word}")


def remote_loads(html: str) -> list[str]:
    parser = _Loads()
    parser.feed(html)
    return parser.found


@pytest.mark.parametrize(
    ("month", "name"), [("2026-09", "all"), ("2026-11", "all"), ("2026-11", "teaser")]
)
def test_a_digest_loads_no_font_stylesheet_or_script(kit, make_settings, month, name):
    settings = make_settings(no_match_policy="teaser")
    variant = build_issue(kit.sample_issue(month), settings).by_name(name)
    html = personalise(variant, RECIPIENT, settings).html
    assert remote_loads(html) == []
    assert "fonts.googleapis.com" not in html
    assert "font-family:-apple-system" in html  # a system font stack instead


@pytest.mark.parametrize("name", MAILS)
def test_a_one_off_mail_loads_no_font_stylesheet_or_script(settings, name):
    subject, context = SAMPLES[name]
    rendered = render_mail(settings, name, subject, context)
    assert remote_loads(rendered.html) == []


def test_a_template_that_adds_a_web_font_is_refused(kit, make_settings, tmp_path):
    email = tmp_path / "email"
    email.mkdir()
    layout = (default_templates_dir() / "email" / "layout.mjml.j2").read_text("utf-8")
    font = '<mj-font name="Lato" href="https://fonts.googleapis.com/css?family=Lato" />'
    layout = layout.replace("<mj-attributes>", font + "<mj-attributes>")
    layout = layout.replace('<mj-all font-family="', '<mj-all font-family="Lato, ')
    (email / "layout.mjml.j2").write_text(layout)
    settings = make_settings(templates_dir=str(tmp_path))
    with pytest.raises(TemplateError) as info:
        build_issue(kit.sample_issue("2026-10"), settings)
    assert "IP address" in info.value.message
