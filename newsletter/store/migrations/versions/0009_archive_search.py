"""The archive's search index: one row per public summary, searched with full text.

On SQLite an FTS5 virtual table (``porter unicode61``: English stems, any script); on
PostgreSQL a plain table with a ``tsvector`` column (the ``english`` configuration,
title weighted above citation above text) and a GIN index on it. The rows are derived
from the issue files and rebuilt whenever the public archive changes
(:mod:`newsletter.store.archive_index`), so dropping the table loses nothing.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        # month .. research are kept for filters and links, not searched (UNINDEXED).
        op.execute(
            "CREATE VIRTUAL TABLE archive_search USING fts5("
            "month UNINDEXED, key UNINDEXED, topics UNINDEXED, research UNINDEXED, "
            "title, citation, body, implications, "
            "tokenize = 'porter unicode61 remove_diacritics 2')"
        )
        return
    op.execute(
        "CREATE TABLE archive_search ("
        "month VARCHAR(7) NOT NULL, key VARCHAR(200) NOT NULL, "
        "topics TEXT NOT NULL, research VARCHAR(100), "
        "title TEXT NOT NULL, citation TEXT NOT NULL, body TEXT NOT NULL, "
        "implications TEXT NOT NULL, document TSVECTOR NOT NULL, "
        "PRIMARY KEY (month, key))"
    )
    op.execute("CREATE INDEX ix_archive_search_document ON archive_search USING GIN (document)")


def downgrade() -> None:
    op.execute("DROP TABLE archive_search")
