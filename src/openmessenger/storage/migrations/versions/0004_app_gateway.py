"""app gateway: registered accounts (verified identities as HMACs, TOTP), apps,
API keys, app grants, custom media types, app allowlists, webhooks and their
delivery log; a device's app; a message's app, provenance, media type and metadata

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "account_identities",
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("value_hmac", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("verified_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_account_identities_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("kind", "value_hmac", name=op.f("pk_account_identities")),
    )
    with op.batch_alter_table("account_identities", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_account_identities_account_id"), ["account_id"], unique=False
        )

    op.create_table(
        "app_allowlists",
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("peer_address", sa.String(length=300), nullable=False),
        sa.Column("apps", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_app_allowlists_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("account_id", "peer_address", name=op.f("pk_app_allowlists")),
    )
    op.create_table(
        "apps",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("owner_account_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("signing_key", sa.String(length=44), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_account_id"], ["accounts.id"], name=op.f("fk_apps_owner_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_apps")),
    )
    with op.batch_alter_table("apps", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_apps_owner_account_id"), ["owner_account_id"], unique=False
        )

    op.create_table(
        "totp_secrets",
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("sealed_secret", sa.Text(), nullable=False),
        sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_step", sa.BigInteger(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_totp_secrets_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_totp_secrets")),
    )
    op.create_table(
        "verifications",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("channel", sa.String(length=8), nullable=False),
        sa.Column("target_hmac", sa.String(length=64), nullable=False),
        sa.Column("code_hmac", sa.String(length=64), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("app_id", sa.String(length=32), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_verifications_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_verifications")),
    )
    with op.batch_alter_table("verifications", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_verifications_account_id"), ["account_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_verifications_expires_at"), ["expires_at"], unique=False
        )

    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("app_id", sa.String(length=32), nullable=False),
        sa.Column("key_hmac", sa.String(length=64), nullable=False),
        sa.Column("scopes", sa.String(length=256), nullable=False),
        sa.Column("label", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["app_id"], ["apps.id"], name=op.f("fk_api_keys_app_id_apps")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("key_hmac", name=op.f("uq_api_keys_key_hmac")),
    )
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_api_keys_app_id"), ["app_id"], unique=False)

    op.create_table(
        "app_grants",
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("app_id", sa.String(length=32), nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_app_grants_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(["app_id"], ["apps.id"], name=op.f("fk_app_grants_app_id_apps")),
        sa.PrimaryKeyConstraint("account_id", "app_id", name=op.f("pk_app_grants")),
        sa.UniqueConstraint("key_id", name=op.f("uq_app_grants_key_id")),
    )
    op.create_table(
        "app_media_types",
        sa.Column("app_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("schema", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["app_id"], ["apps.id"], name=op.f("fk_app_media_types_app_id_apps")
        ),
        sa.PrimaryKeyConstraint("app_id", "name", name=op.f("pk_app_media_types")),
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("app_id", sa.String(length=32), nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("message_id", sa.String(length=32), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_webhook_deliveries_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["app_id"], ["apps.id"], name=op.f("fk_webhook_deliveries_app_id_apps")
        ),
        sa.ForeignKeyConstraint(
            ["message_id"], ["messages.id"], name=op.f("fk_webhook_deliveries_message_id_messages")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
    )
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_webhook_deliveries_account_id"), ["account_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_webhook_deliveries_app_id"), ["app_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_webhook_deliveries_message_id"), ["message_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_webhook_deliveries_next_attempt_at"), ["next_attempt_at"], unique=False
        )

    op.create_table(
        "webhooks",
        sa.Column("app_id", sa.String(length=32), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("sealed_secret", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["app_id"], ["apps.id"], name=op.f("fk_webhooks_app_id_apps")),
        sa.PrimaryKeyConstraint("app_id", name=op.f("pk_webhooks")),
    )
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("owner_kind", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("registered_at", sa.DateTime(timezone=True), nullable=True))

    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.add_column(sa.Column("app_id", sa.String(length=32), nullable=True))
        batch_op.add_column(
            sa.Column("node_held", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.create_index(batch_op.f("ix_devices_app_id"), ["app_id"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_devices_app_id_apps"), "apps", ["app_id"], ["id"]
        )

    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("app_id", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("provenance", sa.Text(), nullable=True))
        batch_op.add_column(
            sa.Column("media_type", sa.String(length=200), server_default="text", nullable=False)
        )
        batch_op.add_column(sa.Column("media_metadata", sa.Text(), nullable=True))
        batch_op.create_index(
            "ix_messages_app_sender",
            ["app_id", "sender"],
            unique=False,
            sqlite_where=sa.text("app_id IS NOT NULL"),
            postgresql_where=sa.text("app_id IS NOT NULL"),
        )


def downgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index("ix_messages_app_sender")
        batch_op.drop_column("media_metadata")
        batch_op.drop_column("media_type")
        batch_op.drop_column("provenance")
        batch_op.drop_column("app_id")

    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_devices_app_id_apps"), type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_devices_app_id"))
        batch_op.drop_column("node_held")
        batch_op.drop_column("app_id")

    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_column("registered_at")
        batch_op.drop_column("owner_kind")

    op.drop_table("webhooks")
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_webhook_deliveries_next_attempt_at"))
        batch_op.drop_index(batch_op.f("ix_webhook_deliveries_message_id"))
        batch_op.drop_index(batch_op.f("ix_webhook_deliveries_app_id"))
        batch_op.drop_index(batch_op.f("ix_webhook_deliveries_account_id"))

    op.drop_table("webhook_deliveries")
    op.drop_table("app_media_types")
    op.drop_table("app_grants")
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_api_keys_app_id"))

    op.drop_table("api_keys")
    with op.batch_alter_table("verifications", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_verifications_expires_at"))
        batch_op.drop_index(batch_op.f("ix_verifications_account_id"))

    op.drop_table("verifications")
    op.drop_table("totp_secrets")
    with op.batch_alter_table("apps", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_apps_owner_account_id"))

    op.drop_table("apps")
    op.drop_table("app_allowlists")
    with op.batch_alter_table("account_identities", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_account_identities_account_id"))

    op.drop_table("account_identities")
