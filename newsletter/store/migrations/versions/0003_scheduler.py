"""The scheduler: requested one-off schedules, the record of firings, the scheduler lease.

APScheduler's own job table (``apscheduler_jobs``) is created by its job store, not here.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

SCHEDULE_STATUSES = "status IN ('scheduled', 'cancelled', 'fired', 'missed')"
RUN_OUTCOMES = (
    "outcome IN ('running', 'sent', 'queued', 'already_sent', 'refused', 'missed', 'failed')"
)


def upgrade() -> None:
    op.create_table(
        "schedules",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("issue_month", sa.String(7), nullable=False),
        sa.Column("run_at", sa.DateTime(), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.CheckConstraint(SCHEDULE_STATUSES, name=op.f("ck_schedules_status")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_schedules")),
        sa.UniqueConstraint("issue_month", name=op.f("uq_schedules_issue_month")),
    )
    op.create_table(
        "schedule_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.String(64), nullable=False),
        sa.Column("issue_month", sa.String(7), nullable=False),
        sa.Column("scheduled_for", sa.DateTime(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.CheckConstraint(RUN_OUTCOMES, name=op.f("ck_schedule_runs_outcome")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_schedule_runs")),
        sa.UniqueConstraint("job_id", "scheduled_for", name="uq_schedule_runs_job_time"),
    )
    op.create_index("ix_schedule_runs_issue_month", "schedule_runs", ["issue_month"], unique=False)
    op.create_table(
        "scheduler_lease",
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("holder", sa.String(200), nullable=False),
        sa.Column("acquired_at", sa.DateTime(), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_scheduler_lease")),
    )


def downgrade() -> None:
    op.drop_table("scheduler_lease")
    op.drop_index("ix_schedule_runs_issue_month", table_name="schedule_runs")
    op.drop_table("schedule_runs")
    op.drop_table("schedules")
