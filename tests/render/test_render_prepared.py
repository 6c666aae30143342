"""Prepared parts: split once around markers, fill per recipient."""

from __future__ import annotations

import pytest

from newsletter.render.prepared import MissingFieldError, marker, prepare


def test_fill_puts_values_in_every_hole():
    part = prepare("text", f"Hi {marker('name')}, see {marker('url')} or {marker('url')}.")
    assert part.names == ("name", "url", "url")
    assert part.fields == {"name", "url"}
    assert (
        part.fill({"name": "Ann", "url": "http://x/1"}) == "Hi Ann, see http://x/1 or http://x/1."
    )


def test_html_values_are_escaped_text_values_are_not():
    raw = f"<p>Dear {marker('first_name')},</p>"
    name = 'Tom <b>"&" Jerry'
    assert prepare("html", raw).fill({"first_name": name}) == (
        "<p>Dear Tom &lt;b&gt;&quot;&amp;&quot; Jerry,</p>"
    )
    assert prepare("text", raw).fill({"first_name": name}) == f"<p>Dear {name},</p>"


def test_braces_in_static_text_and_values_survive():
    part = prepare("text", "{{ 7*7 }} {x} " + marker("a") + " {}")
    assert part.fill({"a": "{b}"}) == "{{ 7*7 }} {x} {b} {}"


def test_missing_value_is_a_named_error():
    part = prepare("text", f"Hi {marker('first_name')}")
    with pytest.raises(MissingFieldError, match="first_name"):
        part.fill({})


def test_text_without_markers_is_one_segment():
    part = prepare("html", "<p>static</p>")
    assert part.segments == ("<p>static</p>",)
    assert part.fill({}) == "<p>static</p>"


def test_look_alike_marker_in_content_is_not_a_hole():
    fake = marker("first_name").replace(marker("x")[4:-4], "000000000000")
    part = prepare("text", "@@nl000000000000:first_name@@ and " + fake)
    assert part.names == ()
