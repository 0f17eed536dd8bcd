"""messages across nodes: which sent message a package carried, for receipts, edits
and deletions that follow it

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "openmsg_sent",
        sa.Column("message_id", sa.String(length=32), nullable=False),
        sa.Column("owner_account_id", sa.String(length=32), nullable=False),
        sa.Column("peer_address", sa.String(length=300), nullable=False),
        sa.Column("nonce", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["message_id"], ["messages.id"], name=op.f("fk_openmsg_sent_message_id_messages")
        ),
        sa.PrimaryKeyConstraint("message_id", name=op.f("pk_openmsg_sent")),
        sa.UniqueConstraint(
            "owner_account_id", "peer_address", "nonce", name="uq_openmsg_sent_reference"
        ),
    )
    # Messages still on their way know their nonce: they can be followed too.
    op.execute(
        "INSERT INTO openmsg_sent (message_id, owner_account_id, peer_address, nonce) "
        "SELECT message_id, owner_account_id, peer_address, nonce FROM openmsg_outbox"
    )
    op.create_table(
        "openmsg_revisions_out",
        sa.Column(
            "id",
            sa.Integer().with_variant(sa.BigInteger(), "postgresql"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("domain", sa.String(length=253), nullable=False),
        sa.Column("message_id", sa.String(length=32), nullable=False),
        sa.Column("item", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("give_up_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["messages.id"],
            name=op.f("fk_openmsg_revisions_out_message_id_messages"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_openmsg_revisions_out")),
    )
    with op.batch_alter_table("openmsg_revisions_out", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_openmsg_revisions_out_domain"), ["domain"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_openmsg_revisions_out_message_id"), ["message_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_openmsg_revisions_out_next_attempt_at"),
            ["next_attempt_at"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("openmsg_revisions_out", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_openmsg_revisions_out_next_attempt_at"))
        batch_op.drop_index(batch_op.f("ix_openmsg_revisions_out_message_id"))
        batch_op.drop_index(batch_op.f("ix_openmsg_revisions_out_domain"))
    op.drop_table("openmsg_revisions_out")
    op.drop_table("openmsg_sent")
