"""Planning in steps: ``sends.planned_through`` marks a send whose planning is not over.

A large send is planned in steps of subscriber ids, each its own transaction, so its first
messages can go while the rest is being planned. ``planned_through`` is the highest
subscriber id planned so far while planning goes on, and NULL once every subscriber has a
row (every send before this revision). A send is never marked done while it is set.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sends") as batch:
        batch.add_column(sa.Column("planned_through", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sends") as batch:
        batch.drop_column("planned_through")
