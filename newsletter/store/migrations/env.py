"""Alembic environment, configured from code (no alembic.ini).

The caller passes an open connection in ``config.attributes["connection"]`` (see
:func:`newsletter.store.db.upgrade_database`); offline SQL generation is not supported.
"""

from __future__ import annotations

from alembic import context

from newsletter.store.models import Base, is_mapped_name

config = context.config
connection = config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `newsletter db upgrade`")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    # SQLite cannot ALTER most things; batch mode rebuilds tables in later revisions.
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
    include_name=is_mapped_name,
)
with context.begin_transaction():
    context.run_migrations()
