"""Build an issue's variants: each distinct set of summaries rendered once, HTML and text.

``build_issue`` renders every variant a subscriber can get (see
:func:`~newsletter.rules.variants.possible_variants`) through the templates in
``templates/email/``: Jinja (autoescaped) then MJML for HTML, Jinja without escaping for
the text part, both from the same content. Personal values are left as holes
(:mod:`newsletter.render.prepared`) for delivery to fill per recipient.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from markupsafe import Markup

from newsletter.config import Settings
from newsletter.content.markdown import render_markdown
from newsletter.content.model import MAX_SUBJECT, Issue, Summary, build_subject
from newsletter.render.errors import NoMatchingVariantError
from newsletter.render.prepared import PreparedPart, marker, prepare
from newsletter.render.templates import mjml_to_html, render_template
from newsletter.render.text import (
    GLUE,
    WIDTH,
    Footnotes,
    References,
    aligned,
    glued,
    markdown_to_text,
    wrap,
    wrap_items,
)
from newsletter.rules.links import archive_url, page_url
from newsletter.rules.personal import FIELDS, fewer_field
from newsletter.rules.variants import VariantKey, choose_variant, possible_variants

HTML_TEMPLATE = "issue.mjml.j2"
TEXT_TEMPLATE = "issue.txt.j2"
TEASER_HTML_TEMPLATE = "teaser.mjml.j2"
TEASER_TEXT_TEMPLATE = "teaser.txt.j2"
PREHEADER_LENGTH = 140


@dataclass(frozen=True)
class Variant:
    """One distinct digest of an issue: its summaries, rendered once, with holes."""

    key: VariantKey
    summaries: tuple[Summary, ...]
    subject: str
    web_view_url: str
    html: PreparedPart
    text: PreparedPart

    @property
    def name(self) -> str:
        """ "all", "teaser" or e.g. "s1+s3" (positions in the issue)."""
        return self.key.name

    @property
    def is_teaser(self) -> bool:
        """True for the short note sent when no summary matches."""
        return self.key.is_teaser

    @property
    def summary_topics(self) -> dict[int, frozenset[str]]:
        """The topic slugs of this variant's summaries, by position in the issue (what the
        "fewer emails on" fields are filled from)."""
        positions = self.key.pick(range(1, self.key.count + 1))
        return {
            n: frozenset(t.slug for t in s.topics)
            for n, s in zip(positions, self.summaries, strict=True)
        }


@dataclass(frozen=True)
class BuiltIssue:
    """Every variant of one issue, keyed by :class:`~newsletter.rules.variants.VariantKey`."""

    issue: Issue
    variants: dict[VariantKey, Variant]
    policy: str

    def variant_for(self, topics: Iterable[str], all_topics: bool = False) -> Variant | None:
        """The variant a subscriber with ``topics`` gets; None when the policy skips them."""
        key = choose_variant(self.issue.summary_topics, topics, all_topics, self.policy)
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


def variant_keys(issue: Issue, policy: str) -> list[VariantKey]:
    """Every variant of ``issue`` a reader can get under ``policy``, largest first."""
    keys = possible_variants(issue.summary_topics)
    if policy == "teaser":
        keys.append(VariantKey.teaser(len(issue.summaries)))
    return keys


def build_issue(issue: Issue, settings: Settings) -> BuiltIssue:
    """Render every variant of ``issue`` once (plus the teaser when the policy asks)."""
    settings.require("postal_address", "in the footer of every email")
    variants = {
        key: render_variant(issue, key, settings)
        for key in variant_keys(issue, settings.no_match_policy)
    }
    return BuiltIssue(issue, variants, settings.no_match_policy)


def render_variant(issue: Issue, key: VariantKey, settings: Settings) -> Variant:
    """Render the variant of ``issue`` holding the summaries of ``key`` (none: teaser)."""
    settings.require("postal_address", "in the footer of every email")
    chosen = key.pick(issue.summaries)
    teaser = key.is_teaser
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


def topic_link(settings: Settings, slug: str) -> str:
    """The "fewer emails on this topic" link, with the token left as a hole."""
    return page_url(settings.base_url, "topic", marker("topic_token"), slug=slug)


@dataclass(frozen=True)
class _SummaryView:
    key: str
    number: int  # its place in this digest (a reader of summary 3 alone sees it as 1)
    position: int  # its place in the issue
    title: str
    citation: str | None
    topics: tuple[tuple[str, str], ...]  # (name, "fewer emails" link for any reader)
    # The reader's own "fewer emails on" line, a hole filled per recipient (HTML, text).
    fewer_html: Any
    fewer_text: Any
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
    def view(n: int, s: Summary) -> _SummaryView:
        position = positions[s.key]
        return _SummaryView(
            key=s.key,
            number=n,
            position=position,
            fewer_html=fields[fewer_field("html", position)],
            fewer_text=fields[fewer_field("text", position)],
            title=s.title,
            citation=s.citation,
            topics=tuple((t.name, topic_link(settings, t.slug)) for t in s.topics),
            research=s.research.name if s.research else None,
            body=s.body,
            implications=s.implications,
            # render_markdown escapes raw HTML, so its output is safe to insert as markup.
            body_html=markdown_html(s.body),
            implications_html=markdown_html(s.implications),
            link=s.link,
            archive_url=archive_url(settings.base_url, issue.month, s.key),
        )

    positions = {s.key: n for n, s in enumerate(issue.summaries, 1)}
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
        "intro_html": markdown_html(issue.intro) if issue.intro else None,
        "summaries": [view(n, s) for n, s in enumerate(chosen, 1)],
        "all_summaries": [view(positions[s.key], s) for s in issue.summaries],
        "also_in_issue": [view(positions[s.key], s) for s in others]
        if settings.also_in_issue
        else [],
        "field": fields,
        "preferences_url": page_url(base, "preferences", fields["preferences_token"]),
        "unsubscribe_url": page_url(base, "unsubscribe", fields["unsubscribe_token"]),
        "web_view_url": fields["web_view_url"],
        "web_view_default": archive_url(base, issue.month),
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
        "wrap_items": wrap_items,
        "glue": GLUE,  # a space wrap() never breaks at: title ~ glue ~ refs.ref(url)
        # One numbering of links for the whole message: each call starts a section.
        "references": Footnotes().section,
        "markdown_text": markdown_to_text,
        "link_list": link_list,
        "aligned": aligned,
        # Helper for the HTML templates: Markdown source to safe markup.
        "markdown_html": markdown_html,
    }


def markdown_html(source: str) -> Any:
    """Markdown ``source`` as HTML markup (raw HTML in it is shown as text, so it is safe)."""
    return Markup(render_markdown(source))


def link_list(pairs: Iterable[tuple[str, str]], refs: References) -> str:
    """``label [n]; label [m]`` for (label, url) pairs, numbering the URLs in ``refs``;
    each label stays on one line with its number when wrapped."""
    return "; ".join(glued(f"{label} {refs.ref(url)}") for label, url in pairs)


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
    text = text.replace(GLUE, " ")  # a glue a template left outside wrap()
    lines = [line.rstrip() for line in text.strip("\n").split("\n")]
    out: list[str] = []
    for line in lines:
        if not line and out and not out[-1]:
            continue
        out.append(line)
    return "\n".join(out) + "\n"
