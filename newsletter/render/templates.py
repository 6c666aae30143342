"""The Jinja environments of the email templates and the translation of their errors.

Templates are looked up first in ``settings.templates_dir / "email"`` (the project's own,
editable copies), then in the defaults shipped with the program, so a project only needs
the files it changes.
"""

from __future__ import annotations

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


def mjml_to_html(mjml: str, template: str) -> str:
    """Convert MJML to HTML; :class:`TemplateError` naming the template if it is invalid."""
    try:
        return mjml2html(mjml, disable_comments=True)
    except (ValueError, RuntimeError) as exc:
        raise TemplateError(
            f"{template}: the MJML it produced is not valid: {exc}",
            hint="check that every mj-* tag is closed and nested as MJML requires",
        ) from None
