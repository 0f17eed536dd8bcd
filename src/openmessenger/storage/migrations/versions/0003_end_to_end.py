"""end to end: device keys and revocation, one-time keys, account keys and the
signed device list, key backup, link requests, to-device messages; a message's
encryption and an outbox row's sealed plaintext

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sealing_key", sa.String(length=43), nullable=True))
        batch_op.add_column(sa.Column("sealing_key_signature", sa.String(length=86), nullable=True))
        batch_op.add_column(sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "encryption",
                sa.String(length=24),
                nullable=False,
                server_default="transport-encrypted",
            )
        )
    with op.batch_alter_table("openmsg_outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sealed_plaintext", sa.Text(), nullable=True))

    op.create_table(
        "one_time_keys",
        sa.Column("device_id", sa.String(length=32), nullable=False),
        sa.Column("fallback", sa.Boolean(), nullable=False),
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column("key", sa.String(length=43), nullable=False),
        sa.Column("signature", sa.String(length=86), nullable=False),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name=op.f("fk_one_time_keys_device_id_devices")
        ),
        sa.PrimaryKeyConstraint("device_id", "fallback", "key_id", name=op.f("pk_one_time_keys")),
    )
    op.create_index(
        "uq_one_time_keys_fallback",
        "one_time_keys",
        ["device_id"],
        unique=True,
        sqlite_where=sa.text("fallback"),
        postgresql_where=sa.text("fallback"),
    )
    op.create_table(
        "account_keys",
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("signing_key", sa.String(length=43), nullable=False),
        sa.Column("device_list", sa.Text(), nullable=False),
        sa.Column("device_list_version", sa.BigInteger(), nullable=False),
        sa.Column("recovery_auth_key", sa.String(length=43), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_account_keys_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_account_keys")),
    )
    op.create_table(
        "key_backup",
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("entry_id", sa.String(length=100), nullable=False),
        sa.Column("entry", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_key_backup_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("account_id", "entry_id", name=op.f("pk_key_backup")),
    )
    op.create_table(
        "link_requests",
        sa.Column("code_hmac", sa.String(length=64), nullable=False),
        sa.Column("device_id", sa.String(length=32), nullable=False),
        sa.Column("ed25519_key", sa.String(length=44), nullable=False),
        sa.Column("curve25519_key", sa.String(length=44), nullable=False),
        sa.Column("one_time_key", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("approved_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("code_hmac", name=op.f("pk_link_requests")),
        sa.UniqueConstraint("device_id", name=op.f("uq_link_requests_device_id")),
        sa.UniqueConstraint("ed25519_key", name=op.f("uq_link_requests_ed25519_key")),
    )
    op.create_index(op.f("ix_link_requests_expires_at"), "link_requests", ["expires_at"])
    op.create_table(
        "to_device",
        sa.Column(
            "id",
            sa.Integer().with_variant(sa.BigInteger(), "postgresql"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("device_id", sa.String(length=32), nullable=False),
        sa.Column("sender_device", sa.String(length=32), nullable=False),
        sa.Column("sender_key", sa.String(length=43), nullable=False),
        sa.Column("olm", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name=op.f("fk_to_device_device_id_devices")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_to_device")),
        # Ids are never reused, even after the newest rows were deleted.
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_to_device_device_id"), "to_device", ["device_id"])


def downgrade() -> None:
    for table in ("to_device", "link_requests", "key_backup", "account_keys", "one_time_keys"):
        op.drop_table(table)
    with op.batch_alter_table("openmsg_outbox", schema=None) as batch_op:
        batch_op.drop_column("sealed_plaintext")
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_column("encryption")
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.drop_column("revoked_at")
        batch_op.drop_column("sealing_key_signature")
        batch_op.drop_column("sealing_key")
