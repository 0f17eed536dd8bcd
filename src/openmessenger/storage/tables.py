"""The schema, as SQLAlchemy Core tables. Migrations in ``migrations/`` build it;
this module is what the repositories query."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite keeps no zone of its own)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


Timestamp = UTCDateTime()

accounts = Table(
    "accounts",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("address", String(300), nullable=False, unique=True),
    Column("kind", String(16), nullable=False),
    Column("display_name", String(40)),
    Column("created_at", Timestamp, nullable=False),
)

devices = Table(
    "devices",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("account_id", String(32), ForeignKey("accounts.id"), nullable=False, index=True),
    Column("ed25519_key", String(44), nullable=False, unique=True),
    Column("curve25519_key", String(44), nullable=False),
    Column("created_at", Timestamp, nullable=False),
    # Last assigned stream position; bumped with UPDATE .. RETURNING so that
    # concurrent writers serialise on the row and positions never repeat.
    Column("stream_head", BigInteger, nullable=False, default=0),
)

device_tokens = Table(
    "device_tokens",
    metadata,
    Column("token_hmac", String(64), primary_key=True),
    Column("device_id", String(32), ForeignKey("devices.id"), nullable=False, index=True),
    Column("created_at", Timestamp, nullable=False),
)

auth_challenges = Table(
    "auth_challenges",
    metadata,
    Column("challenge_hmac", String(64), primary_key=True),
    Column("expires_at", Timestamp, nullable=False, index=True),
)

pass_codes = Table(
    "pass_codes",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("owner_account_id", String(32), ForeignKey("accounts.id"), nullable=False),
    Column("code_hmac", String(64), nullable=False),
    Column("bound_to", String(300)),
    Column("state", String(16), nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("expires_at", Timestamp, nullable=False),
    Column("used_by", String(300)),
    Column("used_at", Timestamp),
    Index("ix_pass_codes_owner_state", "owner_account_id", "state"),
)

# Spent guess budget per (owner, pool); pool "" is the open pool, otherwise
# the bound address. See core/passcodes.py.
pass_code_budgets = Table(
    "pass_code_budgets",
    metadata,
    Column("owner_account_id", String(32), ForeignKey("accounts.id"), primary_key=True),
    Column("pool", String(300), primary_key=True),
    Column("spent", Integer, nullable=False),
)

conversations = Table(
    "conversations",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("created_at", Timestamp, nullable=False),
    # Last assigned message seq: the conversation's one order (DESIGN §3).
    Column("last_seq", BigInteger, nullable=False, default=0),
)

connections = Table(
    "connections",
    metadata,
    Column("owner_account_id", String(32), ForeignKey("accounts.id"), primary_key=True),
    Column("peer_address", String(300), primary_key=True),
    Column("peer_display_name", String(40)),
    Column("conversation_id", String(32), ForeignKey("conversations.id"), nullable=False),
    Column("connected_at", Timestamp, nullable=False),
)

messages = Table(
    "messages",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("conversation_id", String(32), ForeignKey("conversations.id"), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("sender", String(300), nullable=False),
    Column("sender_device", String(32), nullable=False),
    Column("recipient", String(300), nullable=False),
    Column("body", Text, nullable=False),
    Column("sent_at", Timestamp, nullable=False),
    Column("status", String(16), nullable=False),
    Column("client_txn_id", String(128)),
    UniqueConstraint("conversation_id", "seq", name="uq_messages_conversation_seq"),
    UniqueConstraint("sender_device", "client_txn_id", name="uq_messages_sender_txn"),
)

device_streams = Table(
    "device_streams",
    metadata,
    Column("device_id", String(32), ForeignKey("devices.id"), primary_key=True),
    Column("position", BigInteger, primary_key=True),
    Column("message_id", String(32), ForeignKey("messages.id"), nullable=False),
)
