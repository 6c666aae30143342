"""Worker leases and the wire fence: claims that outlive only a stopped worker, and an
unsubscribe that is final the moment it returns.

``worker_leases`` has one row per running worker, renewed by a heartbeat; a claimed
delivery is taken over only when its claimer's lease has stopped being renewed.
``deliveries.wire_state`` says where a claimed row is: NULL not started, 1 on the wire
(its message is being sent, or was and its outcome is not written yet).
An unsubscribe skips every row of the person that is not on the wire, in its own
transaction, and waits only for a row that is.

On SQLite, ``subscribers`` is rebuilt with AUTOINCREMENT: without it, erasing the newest
person freed their id for the next one, and the erased person's signed links (which name
the id) opened the newcomer's pages. (PostgreSQL sequences never reuse ids.)

Revision ID: 0006
Revises: 0005_signup_requests
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005_signup_requests"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "worker_leases",
        sa.Column("worker", sa.String(128), primary_key=True),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("renewed_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
    )
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("wire_state", sa.SmallInteger(), nullable=True))
    if op.get_bind().dialect.name == "sqlite":
        # (upgrade_database turns foreign keys off around migrations on SQLite, so that
        # rebuilding a parent table does not cascade into its children.)
        with op.batch_alter_table(
            "subscribers", recreate="always", table_kwargs={"sqlite_autoincrement": True}
        ):
            pass


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("wire_state")
    op.drop_table("worker_leases")
