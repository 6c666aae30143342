"""The archive service: the search index follows the issue files, pages, counts."""

from __future__ import annotations

from pathlib import Path

import pytest

from newsletter.config import load_settings
from newsletter.services import App, archive
from tests.support.catalogue import WORDS, write_catalogue


@pytest.fixture
def small_archive(isolated_env: Path, store_url: str):
    """An App on ``store_url`` whose issues folder holds 14 generated published issues."""
    entries = write_catalogue(isolated_env / "issues", issues=14)
    settings = load_settings(overrides={"database_url": store_url}, environ={})
    return settings, entries


def test_the_index_is_rebuilt_only_when_the_archive_changes(small_archive, isolated_env):
    settings, entries = small_archive
    with App(settings) as app:
        assert archive.refresh_index(app)
        assert not archive.refresh_index(app)  # remembered by this process
        page = archive.archive_page(app, q=WORDS[2])
        assert page.summaries == sum(e.word == WORDS[2] for e in entries)
    with App(settings) as other:
        assert not archive.refresh_index(other)  # another process finds it built
        path = isolated_env / "issues" / f"{entries[0].month}.md"
        path.write_text(path.read_text().replace("This study", "This zebrafish study", 1))
        assert archive.archive_page(other, q="zebrafish").summaries == 1
        assert not archive.refresh_index(other)


def test_pages_counts_and_out_of_range(small_archive):
    settings, entries = small_archive
    with App(settings) as app:
        first = archive.archive_page(app)
        assert (first.pages, first.issues, first.summaries) == (2, 14, len(entries))
        assert [e.issue.month for e in first.entries] == sorted(
            {e.month for e in entries}, reverse=True
        )[:12]
        assert len(archive.archive_page(app, page=2).entries) == 2
        for bad in (0, 3):
            with pytest.raises(archive.PageOutOfRangeError) as caught:
                archive.archive_page(app, page=bad)
            assert caught.value.hint
        topic = entries[0].topics[0]
        counted = archive.archive_page(app, research="meta-analysis")
        assert counted.topic_counts.get(topic, 0) == sum(
            topic in e.topics and e.research == "meta-analysis" for e in entries
        )
        assert counted.research_counts == archive.archive_page(app).research_counts
        nothing = archive.archive_page(app, q="*")
        assert not nothing.searching and nothing.summaries == len(entries)
