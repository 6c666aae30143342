"""Suppression reasons: a complaint puts the address on the suppression list too.

``suppressions.reason`` says why an address is never mailed again without an
administrator's decision: ``erased`` (every row before this revision) or ``complaint``
(the person reported the newsletter as spam through a feedback loop or a provider).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("suppressions", recreate="always") as batch:
        batch.add_column(
            sa.Column("reason", sa.String(16), nullable=False, server_default="erased")
        )
        batch.create_check_constraint("reason", "reason IN ('erased', 'complaint')")


def downgrade() -> None:
    # A complainer's entry stays: without a reason it reads as "erased", which still
    # keeps the address from being mailed.
    with op.batch_alter_table("suppressions", recreate="always") as batch:
        batch.drop_constraint(op.f("ck_suppressions_reason"), type_="check")
        batch.drop_column("reason")
