"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "accounts",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("address", sa.String(length=300), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("display_name", sa.String(length=40), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_accounts")),
        sa.UniqueConstraint("address", name=op.f("uq_accounts_address")),
    )
    op.create_table(
        "auth_challenges",
        sa.Column("challenge_hmac", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("challenge_hmac", name=op.f("pk_auth_challenges")),
    )
    with op.batch_alter_table("auth_challenges", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_auth_challenges_expires_at"), ["expires_at"], unique=False
        )

    op.create_table(
        "conversations",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_conversations")),
    )
    op.create_table(
        "connections",
        sa.Column("owner_account_id", sa.String(length=32), nullable=False),
        sa.Column("peer_address", sa.String(length=300), nullable=False),
        sa.Column("peer_display_name", sa.String(length=40), nullable=True),
        sa.Column("conversation_id", sa.String(length=32), nullable=False),
        sa.Column("connected_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_connections_conversation_id_conversations"),
        ),
        sa.ForeignKeyConstraint(
            ["owner_account_id"],
            ["accounts.id"],
            name=op.f("fk_connections_owner_account_id_accounts"),
        ),
        sa.PrimaryKeyConstraint("owner_account_id", "peer_address", name=op.f("pk_connections")),
    )
    op.create_table(
        "devices",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("ed25519_key", sa.String(length=44), nullable=False),
        sa.Column("curve25519_key", sa.String(length=44), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stream_head", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_devices_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_devices")),
        sa.UniqueConstraint("ed25519_key", name=op.f("uq_devices_ed25519_key")),
    )
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_devices_account_id"), ["account_id"], unique=False)

    op.create_table(
        "messages",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("conversation_id", sa.String(length=32), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("sender", sa.String(length=300), nullable=False),
        sa.Column("sender_device", sa.String(length=32), nullable=False),
        sa.Column("recipient", sa.String(length=300), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("client_txn_id", sa.String(length=128), nullable=True),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_messages_conversation_id_conversations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_messages")),
        sa.UniqueConstraint("conversation_id", "seq", name="uq_messages_conversation_seq"),
        sa.UniqueConstraint("sender_device", "client_txn_id", name="uq_messages_sender_txn"),
    )
    op.create_table(
        "pass_code_budgets",
        sa.Column("owner_account_id", sa.String(length=32), nullable=False),
        sa.Column("pool", sa.String(length=300), nullable=False),
        sa.Column("spent", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_account_id"],
            ["accounts.id"],
            name=op.f("fk_pass_code_budgets_owner_account_id_accounts"),
        ),
        sa.PrimaryKeyConstraint("owner_account_id", "pool", name=op.f("pk_pass_code_budgets")),
    )
    op.create_table(
        "pass_codes",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("owner_account_id", sa.String(length=32), nullable=False),
        sa.Column("code_hmac", sa.String(length=64), nullable=False),
        sa.Column("bound_to", sa.String(length=300), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_by", sa.String(length=300), nullable=True),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["owner_account_id"],
            ["accounts.id"],
            name=op.f("fk_pass_codes_owner_account_id_accounts"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pass_codes")),
    )
    with op.batch_alter_table("pass_codes", schema=None) as batch_op:
        batch_op.create_index(
            "ix_pass_codes_owner_state", ["owner_account_id", "state"], unique=False
        )

    op.create_table(
        "device_streams",
        sa.Column("device_id", sa.String(length=32), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("message_id", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name=op.f("fk_device_streams_device_id_devices")
        ),
        sa.ForeignKeyConstraint(
            ["message_id"], ["messages.id"], name=op.f("fk_device_streams_message_id_messages")
        ),
        sa.PrimaryKeyConstraint("device_id", "position", name=op.f("pk_device_streams")),
    )
    op.create_table(
        "device_tokens",
        sa.Column("token_hmac", sa.String(length=64), nullable=False),
        sa.Column("device_id", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name=op.f("fk_device_tokens_device_id_devices")
        ),
        sa.PrimaryKeyConstraint("token_hmac", name=op.f("pk_device_tokens")),
    )
    with op.batch_alter_table("device_tokens", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_device_tokens_device_id"), ["device_id"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("device_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_device_tokens_device_id"))

    op.drop_table("device_tokens")
    op.drop_table("device_streams")
    with op.batch_alter_table("pass_codes", schema=None) as batch_op:
        batch_op.drop_index("ix_pass_codes_owner_state")

    op.drop_table("pass_codes")
    op.drop_table("pass_code_budgets")
    op.drop_table("messages")
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_devices_account_id"))

    op.drop_table("devices")
    op.drop_table("connections")
    op.drop_table("conversations")
    with op.batch_alter_table("auth_challenges", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_auth_challenges_expires_at"))

    op.drop_table("auth_challenges")
    op.drop_table("accounts")
