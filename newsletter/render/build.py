"""Build an issue's variants: each distinct set of summaries rendered once, HTML and text.

``build_issue`` renders every variant a subscriber can get (see
:func:`~newsletter.render.variants.possible_variant_keys`) through the templates in
``templates/email/``: Jinja (autoescaped) then MJML for HTML, Jinja without escaping for
the text part, both from the same content. Personal values are left as holes
(:mod:`newsletter.render.prepared`) to fill per recipient.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from newsletter.content.markdown import render_markdown
from newsletter.content.model import MAX_SUBJECT, Issue, Summary, build_subject
from newsletter.render.errors import NoMatchingVariantError
from newsletter.render.personalise import FIELDS, RecipientFields, recipient_values
from newsletter.render.prepared import PreparedPart, marker, prepare
from newsletter.render.templates import mjml_to_html, render_template
from newsletter.render.text import WIDTH, References, aligned, markdown_to_text, wrap
from newsletter.render.variants import TEASER, choose_variant_key, possible_variant_keys
from newsletter.tokens import LINK_PATHS

if TYPE_CHECKING:
    from newsletter.config import Settings

HTML_TEMPLATE = "issue.mjml.j2"
TEXT_TEMPLATE = "issue.txt.j2"
TEASER_HTML_TEMPLATE = "teaser.mjml.j2"
TEASER_TEXT_TEMPLATE = "teaser.txt.j2"
PREHEADER_LENGTH = 140
# Gmail clips messages whose HTML is larger than this ("[Message clipped]").
HTML_SIZE_LIMIT = 102 * 1024

# Values of typical length, to measure a variant as subscribers will receive it.
SAMPLE_RECIPIENT = RecipientFields(
    email="alex.example@example.org",
    subscriber_id=123456,
    name="Alex Example",
    topics=(
        "alliance-and-therapeutic-relationship",
        "empathy",
        "depression-and-depressive-symptoms",
    ),
)


@dataclass(frozen=True)
class Variant:
    """One distinct digest of an issue: its summaries, rendered once, with holes."""

    key: frozenset[str]
    name: str  # "all", "teaser" or e.g. "s1+s3" (positions in the issue)
    summaries: tuple[Summary, ...]
    subject: str
    web_view_url: str
    html: PreparedPart
    text: PreparedPart

    @property
    def is_teaser(self) -> bool:
        """True for the short note sent when no summary matches."""
        return not self.key


@dataclass(frozen=True)
class BuiltIssue:
    """Every variant of one issue, keyed by the frozenset of its summary keys."""

    issue: Issue
    variants: dict[frozenset[str], Variant]
    policy: str

    def variant_for(self, topics: Iterable[str], all_topics: bool = False) -> Variant | None:
        """The variant a subscriber with ``topics`` gets; None when the policy skips them."""
        key = choose_variant_key(self.issue, topics, all_topics, self.policy)
        return None if key is None else self.variants[key]

    def by_name(self, name: str) -> Variant:
        """The variant called ``name`` ("all", "teaser", "s1+s3")."""
        for v in self.variants.values():
            if v.name == name:
                return v
        raise NoMatchingVariantError(
            f"no variant {name!r} in issue {self.issue.month}",
            hint="one of: " + ", ".join(v.name for v in self.variants.values()),
        )


def variant_name(issue: Issue, key: frozenset[str]) -> str:
    """A short stable name for a variant: "all", "teaser", or positions like "s1+s3"."""
    if not key:
        return "teaser"
    if len(key) == len(issue.summaries):
        return "all"
    return "+".join(f"s{n}" for n, s in enumerate(issue.summaries, 1) if s.key in key)


def build_issue(issue: Issue, settings: Settings) -> BuiltIssue:
    """Render every variant of ``issue`` once (plus the teaser when the policy asks)."""
    settings.require("postal_address", "in the footer of every email")
    keys = possible_variant_keys(issue)
    if settings.no_match_policy == "teaser":
        keys.append(TEASER)
    variants = {key: render_variant(issue, key, settings) for key in keys}
    return BuiltIssue(issue, variants, settings.no_match_policy)


def render_variant(issue: Issue, key: frozenset[str], settings: Settings) -> Variant:
    """Render the variant of ``issue`` holding the summaries in ``key`` (empty: teaser)."""
    settings.require("postal_address", "in the footer of every email")
    chosen = tuple(s for s in issue.summaries if s.key in key)
    teaser = not key
    subject = _subject(issue, chosen)
    context = _context(issue, chosen, subject, settings)
    html_name, text_name = (
        (TEASER_HTML_TEMPLATE, TEASER_TEXT_TEMPLATE) if teaser else (HTML_TEMPLATE, TEXT_TEMPLATE)
    )
    mjml = render_template(settings.templates_dir, "html", html_name, context)
    html = mjml_to_html(mjml, html_name)
    text = render_template(settings.templates_dir, "text", text_name, context)
    return Variant(
        key=key,
        name=variant_name(issue, key),
        summaries=chosen,
        subject=subject,
        web_view_url=context["web_view_default"],
        html=prepare("html", html),
        text=prepare("text", tidy_text(text)),
    )


def _subject(issue: Issue, chosen: tuple[Summary, ...]) -> str:
    # The author's subject wins; otherwise name the titles this reader actually gets.
    if issue.subject:
        return issue.subject[:MAX_SUBJECT]
    if not chosen or len(chosen) == len(issue.summaries):
        return issue.effective_subject
    return build_subject([s.title for s in chosen], issue.month_name)


def archive_url(settings: Settings, issue: Issue, summary: Summary | None = None) -> str:
    """The web archive page of the issue, or of one summary of it."""
    base = f"{settings.base_url}/archive/{issue.month}"
    return f"{base}/{summary.key}" if summary else base


def topic_link(settings: Settings, slug: str) -> str:
    """The "fewer emails on this topic" link, with the token left as a hole."""
    return settings.base_url + LINK_PATHS["topic"].format(token=marker("topic_token"), slug=slug)


@dataclass(frozen=True)
class _SummaryView:
    key: str
    number: int
    title: str
    citation: str | None
    topics: tuple[tuple[str, str], ...]  # (name, "fewer emails" link)
    research: str | None
    body: str  # Markdown source, for the text part
    implications: str
    body_html: Any
    implications_html: Any
    link: str | None
    archive_url: str


def _context(
    issue: Issue, chosen: tuple[Summary, ...], subject: str, settings: Settings
) -> dict[str, Any]:
    from markupsafe import Markup

    def view(n: int, s: Summary) -> _SummaryView:
        return _SummaryView(
            key=s.key,
            number=n,
            title=s.title,
            citation=s.citation,
            topics=tuple((t.name, topic_link(settings, t.slug)) for t in s.topics),
            research=s.research.name if s.research else None,
            body=s.body,
            implications=s.implications,
            # render_markdown escapes raw HTML, so its output is safe to insert as markup.
            body_html=Markup(render_markdown(s.body)),
            implications_html=Markup(render_markdown(s.implications)),
            link=s.link,
            archive_url=archive_url(settings, issue, s),
        )

    numbered = {s.key: n for n, s in enumerate(issue.summaries, 1)}
    others = [s for s in issue.summaries if s not in chosen]
    fields = {name: Markup(marker(name)) for name in FIELDS}
    base = settings.base_url
    return {
        **common_context(settings),
        "month": issue.month,
        "month_name": issue.month_name,
        "subject": subject,
        "preheader": _preheader(issue, chosen),
        "intro": issue.intro,
        "intro_html": Markup(render_markdown(issue.intro)) if issue.intro else None,
        "summaries": [view(numbered[s.key], s) for s in chosen],
        "all_summaries": [view(numbered[s.key], s) for s in issue.summaries],
        "also_in_issue": [view(numbered[s.key], s) for s in others]
        if settings.also_in_issue
        else [],
        "field": fields,
        "preferences_url": base
        + LINK_PATHS["preferences"].format(token=fields["preferences_token"]),
        "unsubscribe_url": base
        + LINK_PATHS["unsubscribe"].format(token=fields["unsubscribe_token"]),
        "web_view_url": fields["web_view_url"],
        "web_view_default": archive_url(settings, issue),
    }


def common_context(settings: Settings) -> dict[str, Any]:
    """What every email template gets, the digest and the one-off emails alike: the names,
    the postal address (also split into ``postal_lines``), ``base_url`` and the helpers."""
    return {
        "newsletter_name": settings.newsletter_name,
        "sender_name": settings.sender_name or settings.newsletter_name,
        "postal_address": settings.postal_address,
        "postal_lines": [
            p.strip() for p in re.split(r"\n|\s*;\s*", settings.postal_address) if p.strip()
        ],
        "base_url": settings.base_url,
        # Helpers for the text templates.
        "width": WIDTH,
        "wrap": wrap,
        "references": References,
        "markdown_text": markdown_to_text,
        "link_list": link_list,
        "aligned": aligned,
        # Helper for the HTML templates: Markdown source to safe markup.
        "markdown_html": markdown_html,
    }


def markdown_html(source: str) -> Any:
    """Markdown ``source`` as HTML markup (raw HTML in it is shown as text, so it is safe)."""
    from markupsafe import Markup

    return Markup(render_markdown(source))


def link_list(pairs: Iterable[tuple[str, str]], refs: References) -> str:
    """``label [n]; label [m]`` for (label, url) pairs, numbering the URLs in ``refs``."""
    return "; ".join(f"{label} {refs.ref(url)}" for label, url in pairs)


def _preheader(issue: Issue, chosen: tuple[Summary, ...]) -> str:
    if issue.intro:
        text = " ".join(markdown_to_text(issue.intro, References()).split())
        text = text.replace("_", "").replace("*", "")
    elif chosen:
        text = "In this issue: " + "; ".join(s.title for s in chosen)
    else:
        text = "This month's research summaries, and how to choose the topics you receive."
    if len(text) > PREHEADER_LENGTH:
        text = text[: PREHEADER_LENGTH - 1].rsplit(" ", 1)[0] + "…"
    return text


def tidy_text(text: str) -> str:
    """At most one blank line in a row, no trailing spaces, one final newline."""
    # Templates are easier to edit with generous blank lines; the email gets at most one.
    lines = [line.rstrip() for line in text.strip("\n").split("\n")]
    out: list[str] = []
    for line in lines:
        if not line and out and not out[-1]:
            continue
        out.append(line)
    return "\n".join(out) + "\n"


def sample_values(variant: Variant, settings: Settings) -> dict[str, str]:
    """Field values of a typical recipient, to measure or preview a variant."""
    return recipient_values(settings, SAMPLE_RECIPIENT, variant.web_view_url)


def html_size(variant: Variant, settings: Settings) -> int:
    """Bytes of the variant's HTML as a typical recipient receives it."""
    return len(variant.html.fill_bytes(sample_values(variant, settings)))
