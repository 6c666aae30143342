"""Subscribers, their topics, the consent log, the suppression list, store_meta.

Revision ID: 0001
Revises:
Create Date: 2026-01-01
"""

from __future__ import annotations

import secrets

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

STATUSES = "status IN ('pending', 'active', 'paused', 'unsubscribed', 'bounced')"
SOURCES = "source IN ('cli', 'import', 'web')"


def upgrade() -> None:
    op.create_table(
        "subscribers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("all_topics", sa.Boolean(), nullable=False),
        sa.Column("paused_until", sa.Date(), nullable=True),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("confirmed_at", sa.DateTime(), nullable=True),
        sa.Column("unsubscribed_at", sa.DateTime(), nullable=True),
        sa.CheckConstraint(STATUSES, name=op.f("ck_subscribers_status")),
        sa.CheckConstraint(SOURCES, name=op.f("ck_subscribers_source")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subscribers")),
        sa.UniqueConstraint("email", name=op.f("uq_subscribers_email")),
    )
    op.create_index(op.f("ix_subscribers_status"), "subscribers", ["status"])
    op.create_table(
        "subscriber_topics",
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("topic_slug", sa.String(100), nullable=False),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name=op.f("fk_subscriber_topics_subscriber_id_subscribers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("subscriber_id", "topic_slug", name=op.f("pk_subscriber_topics")),
    )
    op.create_index(op.f("ix_subscriber_topics_topic_slug"), "subscriber_topics", ["topic_slug"])
    op.create_table(
        "consent_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=True),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("ip", sa.String(45), nullable=True),
        sa.Column("consent_version", sa.String(32), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.CheckConstraint(SOURCES, name=op.f("ck_consent_events_source")),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name=op.f("fk_consent_events_subscriber_id_subscribers"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consent_events")),
    )
    op.create_index("ix_consent_events_subscriber_id_at", "consent_events", ["subscriber_id", "at"])
    op.create_table(
        "suppressions",
        sa.Column("email_hash", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("email_hash", name=op.f("pk_suppressions")),
    )
    meta = op.create_table(
        "store_meta",
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_store_meta")),
    )
    # The suppression salt belongs to the installation, not to the signing key, so that
    # rotating secret_key never lets erased people back in.
    op.bulk_insert(meta, [{"key": "suppression_salt", "value": secrets.token_hex(32)}])


def downgrade() -> None:
    op.drop_table("store_meta")
    op.drop_table("suppressions")
    op.drop_index("ix_consent_events_subscriber_id_at", table_name="consent_events")
    op.drop_table("consent_events")
    op.drop_index(op.f("ix_subscriber_topics_topic_slug"), table_name="subscriber_topics")
    op.drop_table("subscriber_topics")
    op.drop_index(op.f("ix_subscribers_status"), table_name="subscribers")
    op.drop_table("subscribers")
