"""A snapshot per send: what the workers need to build every message of a send.

``sends`` keeps the planned version's facts (revision, content hash, no-match policy,
each summary's key, title and topics, the header values) and ``send_variants`` each
variant's rendered parts per revision; ``deliveries.revision`` says which revision a row
is planned for. APScheduler's own job table is dropped: the scheduler keeps its jobs in
memory and rebuilds them from ``schedules``. (Sends planned before this revision have no
snapshot; ``newsletter send MONTH --replan`` makes one for the rows not yet sent.)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sends") as batch:
        batch.add_column(sa.Column("revision", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(
            sa.Column("content_hash", sa.String(64), nullable=False, server_default="")
        )
        batch.add_column(sa.Column("policy", sa.String(16), nullable=False, server_default="skip"))
        batch.add_column(
            sa.Column("summaries_info", sa.Text(), nullable=False, server_default="[]")
        )
        batch.add_column(sa.Column("headers", sa.Text(), nullable=False, server_default="{}"))
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("revision", sa.Integer(), nullable=False, server_default="0"))
    op.create_table(
        "send_variants",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("send_id", sa.Integer(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("mask", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(300), nullable=False),
        sa.Column("web_view_url", sa.Text(), nullable=False),
        sa.Column("html", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["send_id"],
            ["sends.id"],
            name=op.f("fk_send_variants_send_id_sends"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_send_variants")),
        sa.UniqueConstraint("send_id", "revision", "mask", name="uq_send_variants_send_mask"),
    )
    op.execute("DROP TABLE IF EXISTS apscheduler_jobs")


def downgrade() -> None:
    op.drop_table("send_variants")
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("revision")
    with op.batch_alter_table("sends") as batch:
        for column in ("headers", "summaries_info", "policy", "content_hash", "revision"):
            batch.drop_column(column)
