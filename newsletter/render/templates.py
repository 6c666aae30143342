"""The Jinja environments of the email templates and the translation of their errors.

Templates are looked up first in ``settings.templates_dir / "email"`` (the project's own,
editable copies), then in the defaults shipped with the program, so a project only needs
the files it changes.
"""

from __future__ import annotations

import re
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
from mjml import mjml2html

from newsletter.config import default_templates_dir
from newsletter.render.errors import TemplateError


@lru_cache(maxsize=8)
def environment(templates_dir: Path, kind: str) -> jinja2.Environment:
    """The environment for ``kind`` "html" (autoescaped MJML) or "text" (no escaping)."""
    folders = [templates_dir / "email", default_templates_dir() / "email"]
    loader = jinja2.FileSystemLoader([str(f) for f in dict.fromkeys(folders) if f.is_dir()])
    env = jinja2.Environment(
        loader=loader,
        autoescape=(kind == "html"),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        auto_reload=True,  # the preview server picks up edited templates
    )
    return env


def render_template(templates_dir: Path, kind: str, name: str, context: dict[str, Any]) -> str:
    """Render template ``name``; :class:`TemplateError` with ``name:line`` if it is broken."""
    env = environment(templates_dir, kind)
    try:
        return env.get_template(name).render(context)
    except jinja2.TemplateSyntaxError as exc:
        where = exc.filename or exc.name or name
        raise TemplateError(f"{where}:{exc.lineno}: {exc.message}") from None
    except jinja2.TemplateNotFound as exc:
        raise TemplateError(
            f"template {exc.name!r} not found in {templates_dir / 'email'} "
            f"or {default_templates_dir() / 'email'}",
            hint="restore the file, or remove your copy to use the default",
        ) from None
    except jinja2.TemplateError as exc:
        raise TemplateError(f"{_template_location(exc, name)}: {exc.message}") from None
    except (TypeError, ValueError, AttributeError) as exc:
        raise TemplateError(f"{_template_location(exc, name)}: {exc}") from None


def _template_location(exc: BaseException, name: str) -> str:
    """``file:line`` of the innermost template frame of ``exc``'s traceback."""
    where = name
    tb = exc.__traceback__ or sys.exc_info()[2]
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename.endswith(".j2"):
            where = f"{filename}:{tb.tb_lineno}"
        tb = tb.tb_next
    return where


# What would make a reader's mail program fetch something from another host as soon as the
# email is opened: a stylesheet or font link, an @import, a url() in a style, a script.
_EXTERNAL = re.compile(
    r"<link\b[^>]*\bhref\s*=\s*[\"']?(?:https?:)?//"
    r"|@import\b"
    r"|@font-face\b"
    r"|url\(\s*[\"']?(?:https?:)?//"
    r"|<script\b",
    re.IGNORECASE,
)


def external_resources(html: str) -> list[str]:
    """The places in ``html`` that load a font, stylesheet or script (none in our email)."""
    return [m.group(0) for m in _EXTERNAL.finditer(html)]


def mjml_to_html(mjml: str, template: str) -> str:
    """Convert MJML to HTML; :class:`TemplateError` naming the template if it is invalid.

    No web fonts: MJML would link Google Fonts for a font-family naming Roboto, Open Sans
    and a few others, and every reader's mail program would then tell Google their IP
    address when opening the email. The templates use system font stacks, and an HTML
    that still loads a font, stylesheet or script from elsewhere (an ``mj-font`` in a
    project's template, say) is refused.
    """
    try:
        html = mjml2html(mjml, disable_comments=True, fonts={})
    except (ValueError, RuntimeError) as exc:
        raise TemplateError(
            f"{template}: the MJML it produced is not valid: {exc}",
            hint="check that every mj-* tag is closed and nested as MJML requires",
        ) from None
    found = external_resources(html)
    if found:
        raise TemplateError(
            f"{template}: the email would load {found[0]!r}... from another host, which "
            "tells that host the IP address of every reader who opens it",
            hint="use a system font stack (no mj-font, @import, @font-face or <script>)",
        )
    return html
