"""contact requests across nodes

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "remote_contact_requests",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("target_account_id", sa.String(length=32), nullable=False),
        sa.Column("sender_address", sa.String(length=300), nullable=False),
        sa.Column("sender_name", sa.String(length=40), nullable=True),
        sa.Column("sender_verified", sa.Boolean(), nullable=False),
        sa.Column("note", sa.String(length=280), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["target_account_id"],
            ["accounts.id"],
            name=op.f("fk_remote_contact_requests_target_account_id_accounts"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_remote_contact_requests")),
        sa.UniqueConstraint(
            "target_account_id",
            "sender_address",
            name="uq_remote_contact_requests_target_sender",
        ),
    )
    op.create_table(
        "outgoing_contact_requests",
        sa.Column("sender_account_id", sa.String(length=32), nullable=False),
        sa.Column("target_address", sa.String(length=300), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["sender_account_id"],
            ["accounts.id"],
            name=op.f("fk_outgoing_contact_requests_sender_account_id_accounts"),
        ),
        sa.PrimaryKeyConstraint(
            "sender_account_id", "target_address", name=op.f("pk_outgoing_contact_requests")
        ),
    )


def downgrade() -> None:
    op.drop_table("outgoing_contact_requests")
    op.drop_table("remote_contact_requests")
