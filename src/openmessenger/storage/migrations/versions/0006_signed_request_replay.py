"""replay memory: the nonces of signed requests between our nodes, kept until their window closes

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "signed_request_nonces",
        sa.Column("origin", sa.String(length=253), nullable=False),
        sa.Column("nonce", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("origin", "nonce", name=op.f("pk_signed_request_nonces")),
    )
    with op.batch_alter_table("signed_request_nonces", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_signed_request_nonces_expires_at"), ["expires_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("signed_request_nonces", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_signed_request_nonces_expires_at"))
    op.drop_table("signed_request_nonces")
