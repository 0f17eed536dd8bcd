"""federation: Openmsg links, handshakes, outbox, received nonces, blocks, flags

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("connections", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("accepts_messages", sa.Boolean(), nullable=False, server_default=sa.true())
        )
        batch_op.add_column(
            sa.Column(
                "peer_accepts_messages", sa.Boolean(), nullable=False, server_default=sa.true()
            )
        )
    op.create_table(
        "openmsg_links",
        sa.Column("owner_account_id", sa.String(length=32), nullable=False),
        sa.Column("peer_address", sa.String(length=300), nullable=False),
        sa.Column("ident_hmac", sa.String(length=64), nullable=False),
        sa.Column("sealed", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_account_id"],
            ["accounts.id"],
            name=op.f("fk_openmsg_links_owner_account_id_accounts"),
        ),
        sa.PrimaryKeyConstraint("owner_account_id", "peer_address", name=op.f("pk_openmsg_links")),
        sa.UniqueConstraint("ident_hmac", name=op.f("uq_openmsg_links_ident_hmac")),
    )
    op.create_table(
        "openmsg_handshakes",
        sa.Column("hash_hmac", sa.String(length=64), nullable=False),
        sa.Column("receiver", sa.String(length=300), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("hash_hmac", name=op.f("pk_openmsg_handshakes")),
    )
    op.create_index(op.f("ix_openmsg_handshakes_expires_at"), "openmsg_handshakes", ["expires_at"])
    op.create_table(
        "openmsg_outbox",
        sa.Column("message_id", sa.String(length=32), nullable=False),
        sa.Column("owner_account_id", sa.String(length=32), nullable=False),
        sa.Column("peer_address", sa.String(length=300), nullable=False),
        sa.Column("nonce", sa.String(length=32), nullable=False),
        sa.Column("salt", sa.String(length=32), nullable=False),
        sa.Column("attempt_ts", sa.BigInteger(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("give_up_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["message_id"], ["messages.id"], name=op.f("fk_openmsg_outbox_message_id_messages")
        ),
        sa.ForeignKeyConstraint(
            ["owner_account_id"],
            ["accounts.id"],
            name=op.f("fk_openmsg_outbox_owner_account_id_accounts"),
        ),
        sa.PrimaryKeyConstraint("message_id", name=op.f("pk_openmsg_outbox")),
        sa.UniqueConstraint("nonce", name=op.f("uq_openmsg_outbox_nonce")),
    )
    op.create_index(
        op.f("ix_openmsg_outbox_next_attempt_at"), "openmsg_outbox", ["next_attempt_at"]
    )
    op.create_table(
        "openmsg_received",
        sa.Column("owner_account_id", sa.String(length=32), nullable=False),
        sa.Column("peer_address", sa.String(length=300), nullable=False),
        sa.Column("nonce", sa.String(length=32), nullable=False),
        sa.Column("message_id", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_account_id"],
            ["accounts.id"],
            name=op.f("fk_openmsg_received_owner_account_id_accounts"),
        ),
        sa.ForeignKeyConstraint(
            ["message_id"], ["messages.id"], name=op.f("fk_openmsg_received_message_id_messages")
        ),
        sa.PrimaryKeyConstraint(
            "owner_account_id", "peer_address", "nonce", name=op.f("pk_openmsg_received")
        ),
    )
    op.create_table(
        "federation_blocks",
        sa.Column("domain", sa.String(length=253), nullable=False),
        sa.Column("blocked_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("domain", name=op.f("pk_federation_blocks")),
    )
    op.create_table(
        "node_flags",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.String(length=256), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_node_flags")),
    )


def downgrade() -> None:
    for table in (
        "node_flags",
        "federation_blocks",
        "openmsg_received",
        "openmsg_outbox",
        "openmsg_handshakes",
        "openmsg_links",
    ):
        op.drop_table(table)
    with op.batch_alter_table("connections", schema=None) as batch_op:
        batch_op.drop_column("peer_accepts_messages")
        batch_op.drop_column("accepts_messages")
