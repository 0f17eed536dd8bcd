"""conversations: groups and their participants, account plans and conversation
policies, preferences, contact requests and blocks

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # --- groups ---------------------------------------------------------------
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("mode", sa.String(length=16), server_default="history", nullable=False)
        )
        batch_op.add_column(sa.Column("name", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("created_by", sa.String(length=300), nullable=True))
    op.create_table(
        "conversation_members",
        sa.Column("conversation_id", sa.String(length=32), nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("address", sa.String(length=300), nullable=False),
        sa.Column("role", sa.String(length=8), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("app_id", sa.String(length=32), nullable=True),
        sa.Column("state", sa.String(length=8), nullable=False),
        sa.Column("invited_by", sa.String(length=300), nullable=True),
        sa.Column("invited_seq", sa.BigInteger(), nullable=True),
        sa.Column("joined_seq", sa.BigInteger(), nullable=True),
        sa.Column("left_seq", sa.BigInteger(), nullable=True),
        sa.Column("joined_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_conversation_members_account_id_accounts"),
        ),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_conversation_members_conversation_id_conversations"),
        ),
        sa.PrimaryKeyConstraint(
            "conversation_id", "account_id", name=op.f("pk_conversation_members")
        ),
    )
    with op.batch_alter_table("conversation_members", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_conversation_members_account_id"), ["account_id"], unique=False
        )
    # --- plans and policies -----------------------------------------------------
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("plan", sa.String(length=16), server_default="free", nullable=False)
        )
    op.create_table(
        "conversation_policies",
        sa.Column("conversation_id", sa.String(length=32), nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("retention_seconds", sa.BigInteger(), nullable=True),
        sa.Column("max_participants", sa.Integer(), nullable=True),
        sa.Column("max_message_bytes", sa.Integer(), nullable=True),
        sa.Column("rate_count", sa.Integer(), nullable=True),
        sa.Column("rate_unit", sa.String(length=8), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_conversation_policies_account_id_accounts"),
        ),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_conversation_policies_conversation_id_conversations"),
        ),
        sa.PrimaryKeyConstraint(
            "conversation_id", "account_id", name=op.f("pk_conversation_policies")
        ),
    )
    with op.batch_alter_table("conversation_policies", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_conversation_policies_account_id"), ["account_id"], unique=False
        )
    # --- preferences, contact requests and blocks ---------------------------------
    op.create_table(
        "preferences",
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("level", sa.String(length=16), nullable=False),
        sa.Column("scope", sa.String(length=300), nullable=False),
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("value", sa.String(length=200), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_preferences_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint(
            "account_id", "level", "scope", "name", name=op.f("pk_preferences")
        ),
    )
    op.create_table(
        "contact_requests",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("target_account_id", sa.String(length=32), nullable=False),
        sa.Column("sender_account_id", sa.String(length=32), nullable=False),
        sa.Column("sender_address", sa.String(length=300), nullable=False),
        sa.Column("note", sa.String(length=280), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["sender_account_id"],
            ["accounts.id"],
            name=op.f("fk_contact_requests_sender_account_id_accounts"),
        ),
        sa.ForeignKeyConstraint(
            ["target_account_id"],
            ["accounts.id"],
            name=op.f("fk_contact_requests_target_account_id_accounts"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_contact_requests")),
        sa.UniqueConstraint(
            "target_account_id", "sender_account_id", name="uq_contact_requests_target_sender"
        ),
    )
    with op.batch_alter_table("contact_requests", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_contact_requests_sender_account_id"), ["sender_account_id"], unique=False
        )
    op.create_table(
        "address_blocks",
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("address", sa.String(length=300), nullable=False),
        sa.Column("blocked_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_address_blocks_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("account_id", "address", name=op.f("pk_address_blocks")),
    )
    # --- groups across nodes ----------------------------------------------------
    op.create_table(
        "group_remote_members",
        sa.Column("conversation_id", sa.String(length=32), nullable=False),
        sa.Column("address", sa.String(length=300), nullable=False),
        sa.Column("role", sa.String(length=8), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("app_id", sa.String(length=32), nullable=True),
        sa.Column("state", sa.String(length=8), nullable=False),
        sa.Column("invited_by", sa.String(length=300), nullable=True),
        sa.Column("invited_seq", sa.BigInteger(), nullable=True),
        sa.Column("joined_seq", sa.BigInteger(), nullable=True),
        sa.Column("left_seq", sa.BigInteger(), nullable=True),
        sa.Column("joined_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_group_remote_members_conversation_id_conversations"),
        ),
        sa.PrimaryKeyConstraint("conversation_id", "address", name=op.f("pk_group_remote_members")),
    )
    with op.batch_alter_table("group_remote_members", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_group_remote_members_address"), ["address"], unique=False
        )
    op.create_table(
        "group_fanout",
        sa.Column("conversation_id", sa.String(length=32), nullable=False),
        sa.Column("domain", sa.String(length=253), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("receivers", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_group_fanout_conversation_id_conversations"),
        ),
        sa.PrimaryKeyConstraint("conversation_id", "domain", "seq", name=op.f("pk_group_fanout")),
    )
    with op.batch_alter_table("group_fanout", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_group_fanout_next_attempt_at"), ["next_attempt_at"], unique=False
        )
    op.create_table(
        "group_forwards",
        sa.Column("message_id", sa.String(length=32), nullable=False),
        sa.Column("conversation_id", sa.String(length=32), nullable=False),
        sa.Column("sender_account_id", sa.String(length=32), nullable=False),
        sa.Column("sender_device", sa.String(length=32), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("client_txn_id", sa.String(length=128), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("give_up_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_group_forwards_conversation_id_conversations"),
        ),
        sa.ForeignKeyConstraint(
            ["sender_account_id"],
            ["accounts.id"],
            name=op.f("fk_group_forwards_sender_account_id_accounts"),
        ),
        sa.PrimaryKeyConstraint("message_id", name=op.f("pk_group_forwards")),
    )
    with op.batch_alter_table("group_forwards", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_group_forwards_next_attempt_at"), ["next_attempt_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_group_forwards_sender_account_id"), ["sender_account_id"], unique=False
        )
    # --- receipts, edits and deletions ---------------------------------------------
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("replaces", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("edited_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f("ix_messages_replaces"), ["replaces"], unique=False)
    op.create_table(
        "receipts",
        sa.Column(
            "id",
            sa.Integer().with_variant(sa.BigInteger(), "postgresql"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("message_id", sa.String(length=32), nullable=False),
        sa.Column("conversation_id", sa.String(length=32), nullable=False),
        sa.Column("sender_account_id", sa.String(length=32), nullable=False),
        sa.Column("reader_account_id", sa.String(length=32), nullable=False),
        sa.Column("reader", sa.String(length=300), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["message_id"], ["messages.id"], name=op.f("fk_receipts_message_id_messages")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_receipts")),
        sa.UniqueConstraint("message_id", "reader_account_id", "kind", name="uq_receipts_once"),
    )
    with op.batch_alter_table("receipts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_receipts_sender_account_id"), ["sender_account_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_receipts_reader_account_id"), ["reader_account_id"], unique=False
        )
    pass


def downgrade() -> None:
    # --- receipts, edits and deletions ---------------------------------------------
    with op.batch_alter_table("receipts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_receipts_reader_account_id"))
        batch_op.drop_index(batch_op.f("ix_receipts_sender_account_id"))
    op.drop_table("receipts")
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_messages_replaces"))
        batch_op.drop_column("deleted_at")
        batch_op.drop_column("edited_at")
        batch_op.drop_column("replaces")
    # --- groups across nodes ----------------------------------------------------
    with op.batch_alter_table("group_forwards", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_group_forwards_sender_account_id"))
        batch_op.drop_index(batch_op.f("ix_group_forwards_next_attempt_at"))
    op.drop_table("group_forwards")
    with op.batch_alter_table("group_fanout", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_group_fanout_next_attempt_at"))
    op.drop_table("group_fanout")
    with op.batch_alter_table("group_remote_members", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_group_remote_members_address"))
    op.drop_table("group_remote_members")
    # --- preferences, contact requests and blocks ---------------------------------
    op.drop_table("address_blocks")
    with op.batch_alter_table("contact_requests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_contact_requests_sender_account_id"))
    op.drop_table("contact_requests")
    op.drop_table("preferences")
    # --- plans and policies -----------------------------------------------------
    with op.batch_alter_table("conversation_policies", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_conversation_policies_account_id"))
    op.drop_table("conversation_policies")
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_column("plan")
    # --- groups ---------------------------------------------------------------
    with op.batch_alter_table("conversation_members", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_conversation_members_account_id"))
    op.drop_table("conversation_members")
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.drop_column("created_by")
        batch_op.drop_column("name")
        batch_op.drop_column("mode")
    pass
