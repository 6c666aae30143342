"""Bounces: each refusal of mail to a person with its evidence; consent events from the
delivery of mail.

``bounces`` keeps the kind (hard, soft, block, complaint; see ``rules.bounces``), the
reply code, the enhanced status, the diagnostic text, the delivery and Message-ID it was
about, where it came from, and for a bounce read from mail the report's own id (unique
per person: reading a mailbox twice records nothing twice). Rows go with their person
when erased. ``consent_events`` may now have the source ``delivery`` (a bounce marks
someone ``bounced``).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

OLD_SOURCES = "source IN ('cli', 'import', 'web')"
NEW_SOURCES = "source IN ('cli', 'import', 'web', 'delivery')"


def upgrade() -> None:
    op.create_table(
        "bounces",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "subscriber_id",
            sa.Integer(),
            sa.ForeignKey("subscribers.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "delivery_id",
            sa.Integer(),
            sa.ForeignKey("deliveries.id", ondelete="SET NULL"),
            nullable=True,
        ),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("code", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(16), nullable=True),
        sa.Column("diagnostic", sa.Text(), nullable=False),
        sa.Column("message_id", sa.String(255), nullable=True),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("report_id", sa.String(255), nullable=True),
        sa.CheckConstraint("kind IN ('hard', 'soft', 'block', 'complaint')", name="kind"),
        sa.UniqueConstraint("report_id", "subscriber_id", name="uq_bounces_report_subscriber"),
    )
    op.create_index("ix_bounces_subscriber_id_at", "bounces", ["subscriber_id", "at"])
    op.create_index("ix_bounces_at", "bounces", ["at"])
    with op.batch_alter_table("consent_events", recreate="always") as batch:
        batch.drop_constraint(op.f("ck_consent_events_source"), type_="check")
        batch.create_check_constraint("source", NEW_SOURCES)


def downgrade() -> None:
    op.execute("DELETE FROM consent_events WHERE source = 'delivery'")
    with op.batch_alter_table("consent_events", recreate="always") as batch:
        batch.drop_constraint(op.f("ck_consent_events_source"), type_="check")
        batch.create_check_constraint("source", OLD_SOURCES)
    op.drop_index("ix_bounces_at", table_name="bounces")
    op.drop_index("ix_bounces_subscriber_id_at", table_name="bounces")
    op.drop_table("bounces")
