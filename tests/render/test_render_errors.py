"""Bad input stops the build with a clear message: issue file, templates, settings."""

from __future__ import annotations

import shutil

import pytest

from newsletter.content.parser import load_issue
from newsletter.errors import IssueFormatError, MissingSettingError
from newsletter.render import TemplateError, build_issue
from newsletter.render.templates import default_templates_dir


@pytest.fixture
def own_templates(tmp_path, make_settings):
    """A project templates folder holding a copy of the defaults, and its settings."""
    folder = tmp_path / "templates"
    shutil.copytree(default_templates_dir(), folder)
    return folder / "email", make_settings(templates_dir=str(folder))


def test_invalid_issue_file_gives_path_and_line(tmp_path, kit):
    path = tmp_path / "2026-12.md"
    text = kit.issue_text(kit.summary_block("A Study", "No Such Topic At All"))
    path.write_text(text)
    with pytest.raises(IssueFormatError) as info:
        load_issue(path)
    assert f"{path}:" in info.value.message
    line = text.splitlines().index("Topics: No Such Topic At All") + 1
    assert f"{path}:{line}:" in info.value.message


def test_template_syntax_error_gives_name_and_line(own_templates, overlapping_issue):
    folder, settings = own_templates
    path = folder / "issue.mjml.j2"
    lines = path.read_text().splitlines()
    lines[5] = "{% for broken %}"
    path.write_text("\n".join(lines))
    with pytest.raises(TemplateError) as info:
        build_issue(overlapping_issue, settings)
    assert f"{path}:6:" in info.value.message
    assert info.value.hint


def test_undefined_variable_gives_name_and_line(own_templates, overlapping_issue):
    folder, settings = own_templates
    path = folder / "issue.txt.j2"
    lines = path.read_text().splitlines()
    lines.insert(3, "{{ no_such_variable }}")
    path.write_text("\n".join(lines))
    with pytest.raises(TemplateError) as info:
        build_issue(overlapping_issue, settings)
    assert f"{path}:4:" in info.value.message
    assert "no_such_variable" in info.value.message


def test_invalid_mjml_names_the_template(own_templates, overlapping_issue, make_settings):
    folder, _ = own_templates
    path = folder / "teaser.mjml.j2"
    path.write_text(path.read_text().replace("</mj-column>", "", 1))
    settings = make_settings(templates_dir=str(folder.parent), no_match_policy="teaser")
    with pytest.raises(TemplateError, match=r"teaser\.mjml\.j2"):
        build_issue(overlapping_issue, settings)


def test_project_templates_override_the_defaults(own_templates, overlapping_issue):
    folder, settings = own_templates
    path = folder / "issue.txt.j2"
    path.write_text(path.read_text().replace("PRACTICE IMPLICATIONS", "WHAT TO DO MONDAY"))
    v = build_issue(overlapping_issue, settings).variant_for([], all_topics=True)
    assert "WHAT TO DO MONDAY" in v.text.fill({f: "x" for f in v.text.fields})


def test_missing_template_is_a_clear_error(tmp_path, make_settings, overlapping_issue):
    empty = tmp_path / "t"
    (empty / "email").mkdir(parents=True)
    (empty / "email" / "issue.mjml.j2").write_text("{% include 'nope.j2' %}")
    with pytest.raises(TemplateError, match=r"nope\.j2"):
        build_issue(overlapping_issue, make_settings(templates_dir=str(empty)))


def test_postal_address_is_required(make_settings, overlapping_issue):
    with pytest.raises(MissingSettingError, match="postal_address"):
        build_issue(overlapping_issue, make_settings(postal_address=""))
