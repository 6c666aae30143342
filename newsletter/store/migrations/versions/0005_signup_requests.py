"""Sign-up requests: what the sign-up form received, kept apart until the owner confirms.

A sign-up no longer writes to ``subscribers``: the address, name, topics, the IP and the
consent text's version wait here (with an expiry) until the address's owner follows the
confirmation link; confirming applies them to the person and deletes the request.

Revision ID: 0005_signup_requests
Revises: 0004
Create Date: 2026-12-15
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_signup_requests"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "signup_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("all_topics", sa.Boolean(), nullable=False),
        sa.Column("topics", sa.Text(), nullable=False),
        sa.Column("ip", sa.String(45), nullable=True),
        sa.Column("consent_version", sa.String(32), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signup_requests")),
        # Never reuse an id (a confirmation link names its request by id).
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_signup_requests_email"), "signup_requests", ["email"])
    op.create_index(op.f("ix_signup_requests_expires_at"), "signup_requests", ["expires_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_signup_requests_expires_at"), table_name="signup_requests")
    op.drop_index(op.f("ix_signup_requests_email"), table_name="signup_requests")
    op.drop_table("signup_requests")
