"""The schema, as SQLAlchemy Core tables. Migrations in ``migrations/`` build it;
this module is what the repositories query."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
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
from sqlalchemy.sql.expression import false

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
    # Registered accounts (docs/apps.md): "person" or "organisation", and when.
    Column("owner_kind", String(16)),
    Column("registered_at", Timestamp),
    # Plans and policies (docs/conversations.md): free, subscription or usage.
    Column("plan", String(16), nullable=False, server_default="free"),
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
    # End to end (docs/encryption.md): the key the node seals transport-encrypted
    # bodies to, signed by the device; a revoked device keeps its row (its id
    # stays taken, its messages keep their sender) but nothing else.
    Column("sealing_key", String(43)),
    Column("sealing_key_signature", String(86)),
    Column("revoked_at", Timestamp),
    # The app whose backend this device is (a managed account's app device);
    # everything it sends is tagged with the app.
    Column("app_id", String(32), ForeignKey("apps.id"), index=True),
    # An app device whose keys the node holds for a plain-HTTP app: the node
    # encrypts and decrypts on its behalf (transport-encrypted), with keys
    # derived from the grant's key, so they die with the grant.
    Column("node_held", Boolean, nullable=False, server_default=false()),
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
    # groups (docs/conversations.md): the mode chosen at creation, a group's name and creator.
    Column("mode", String(16), nullable=False, server_default="history"),
    Column("name", String(64)),
    Column("created_by", String(300)),
)

connections = Table(
    "connections",
    metadata,
    Column("owner_account_id", String(32), ForeignKey("accounts.id"), primary_key=True),
    Column("peer_address", String(300), primary_key=True),
    Column("peer_display_name", String(40)),
    Column("conversation_id", String(32), ForeignKey("conversations.id"), nullable=False),
    Column("connected_at", Timestamp, nullable=False),
    # Openmsg's "allow replies": whether the owner takes messages from the peer,
    # and whether the peer takes the owner's.
    Column("accepts_messages", Boolean, nullable=False, default=True),
    Column("peer_accepts_messages", Boolean, nullable=False, default=True),
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
    Column("encryption", String(24), nullable=False, server_default="transport-encrypted"),
    # App gateway (docs/apps.md): the app a message came through, with the
    # node's attestation (and the app's signature) as JSON; the media type and
    # its metadata (JSON), envelope fields the node reads and validates.
    Column("app_id", String(32)),
    Column("provenance", Text),
    Column("media_type", String(200), nullable=False, server_default="text"),
    Column("media_metadata", Text),
    Column("replaces", String(32), index=True),  # receipts, edits and deletions
    Column("edited_at", Timestamp),  # receipts, edits and deletions
    Column("deleted_at", Timestamp),  # receipts, edits and deletions
    UniqueConstraint("conversation_id", "seq", name="uq_messages_conversation_seq"),
    UniqueConstraint("sender_device", "client_txn_id", name="uq_messages_sender_txn"),
)

# Messages sent through an app, by sender (deleting an app's data for an account).
# Partial: the many messages from people's own devices do not pay for it.
Index(
    "ix_messages_app_sender",
    messages.c.app_id,
    messages.c.sender,
    sqlite_where=messages.c.app_id.isnot(None),
    postgresql_where=messages.c.app_id.isnot(None),
)

# The retention sweep: which conversations hold history older than a date, and
# that history (storage/policies.py).
Index("ix_messages_conversation_sent_at", messages.c.conversation_id, messages.c.sent_at)

device_streams = Table(
    "device_streams",
    metadata,
    Column("device_id", String(32), ForeignKey("devices.id"), primary_key=True),
    Column("position", BigInteger, primary_key=True),
    Column("message_id", String(32), ForeignKey("messages.id"), nullable=False),
)


# --- Federation (Openmsg) -------------------------------------------------------

# The Openmsg codes of a connection with a remote address. The codes and the
# key are sealed under a key derived from the node secret (a dump of the
# database does not let anyone speak for the connection); ``ident_hmac`` finds
# the link of an inbound message.
openmsg_links = Table(
    "openmsg_links",
    metadata,
    Column("owner_account_id", String(32), ForeignKey("accounts.id"), primary_key=True),
    Column("peer_address", String(300), primary_key=True),
    Column("ident_hmac", String(64), nullable=False, unique=True),
    Column("sealed", Text, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
)

# Handshakes this node started and that the receiver may confirm (60 s).
openmsg_handshakes = Table(
    "openmsg_handshakes",
    metadata,
    Column("hash_hmac", String(64), primary_key=True),
    Column("receiver", String(300), nullable=False),
    Column("expires_at", Timestamp, nullable=False, index=True),
)

# Messages to remote addresses not yet delivered (delivered or failed ones
# leave). The package is rebuilt from the message, the link key and ``nonce``
# at each attempt; ``salt`` and ``attempt_ts`` make the current hash.
openmsg_outbox = Table(
    "openmsg_outbox",
    metadata,
    Column("message_id", String(32), ForeignKey("messages.id"), primary_key=True),
    Column("owner_account_id", String(32), ForeignKey("accounts.id"), nullable=False),
    Column("peer_address", String(300), nullable=False),
    Column("nonce", String(32), nullable=False, unique=True),
    Column("salt", String(32), nullable=False),
    Column("attempt_ts", BigInteger, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", Timestamp, nullable=False, index=True),
    Column("give_up_at", Timestamp, nullable=False),
    # Held by one sender until then, so several processes never send one message twice.
    Column("lease_until", Timestamp),
    Column("sealed_plaintext", Text),
)

# Nonces of messages received per link: a nonce (so a package, so a hash) is
# taken once (SM_E007).
openmsg_received = Table(
    "openmsg_received",
    metadata,
    Column("owner_account_id", String(32), ForeignKey("accounts.id"), primary_key=True),
    Column("peer_address", String(300), primary_key=True),
    Column("nonce", String(32), primary_key=True),
    Column("message_id", String(32), ForeignKey("messages.id"), nullable=False),
)

federation_blocks = Table(
    "federation_blocks",
    metadata,
    Column("domain", String(253), primary_key=True),
    Column("blocked_at", Timestamp, nullable=False),
)

# Node-wide switches set by ``openmessenger admin`` (e.g. maintenance).
node_flags = Table(
    "node_flags",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", String(256), nullable=False),
    Column("updated_at", Timestamp, nullable=False),
)


# --- End-to-end encryption (docs/encryption.md) -----------------------------------
# Public keys and ciphertexts only: the node never holds a private key.

# One-time and fallback keys a device published, signed by it. Claiming deletes a
# one-time key; the fallback key (at most one per device) stays until replaced.
# vodozemac numbers fallback keys apart from one-time keys, so their ids may be
# equal: ``fallback`` is part of the key.
one_time_keys = Table(
    "one_time_keys",
    metadata,
    Column("device_id", String(32), ForeignKey("devices.id"), primary_key=True),
    Column("fallback", Boolean, primary_key=True),
    Column("key_id", String(64), primary_key=True),
    Column("key", String(43), nullable=False),
    Column("signature", String(86), nullable=False),
)
Index(
    "uq_one_time_keys_fallback",
    one_time_keys.c.device_id,
    unique=True,
    sqlite_where=one_time_keys.c.fallback,
    postgresql_where=one_time_keys.c.fallback,
)

# The account's signing key and the device list it signed (JSON of a
# SignedDeviceList); ``device_list_version`` only grows. ``recovery_auth_key``
# proves a recovery (set with the key backup).
account_keys = Table(
    "account_keys",
    metadata,
    Column("account_id", String(32), ForeignKey("accounts.id"), primary_key=True),
    Column("signing_key", String(43), nullable=False),
    Column("device_list", Text, nullable=False),
    Column("device_list_version", BigInteger, nullable=False),
    Column("recovery_auth_key", String(43)),
)

# Secrets backed up under the recovery key (JSON of a SignedBackupEntry each).
key_backup = Table(
    "key_backup",
    metadata,
    Column("account_id", String(32), ForeignKey("accounts.id"), primary_key=True),
    Column("entry_id", String(100), primary_key=True),
    Column("entry", Text, nullable=False),
)

# New devices asking to join an account; the code is kept as an HMAC only.
link_requests = Table(
    "link_requests",
    metadata,
    Column("code_hmac", String(64), primary_key=True),
    Column("device_id", String(32), nullable=False, unique=True),
    Column("ed25519_key", String(44), nullable=False, unique=True),
    Column("curve25519_key", String(44), nullable=False),
    Column("one_time_key", Text, nullable=False),
    Column("expires_at", Timestamp, nullable=False, index=True),
    Column("approved_at", Timestamp),
)

# Olm messages between devices of one account, until the receiver acknowledges
# them. Ids only grow (AUTOINCREMENT on SQLite, never reusing a deleted id): a
# device acknowledges "everything up to id N".
to_device = Table(
    "to_device",
    metadata,
    Column(
        "id",
        Integer().with_variant(BigInteger(), "postgresql"),
        primary_key=True,
        autoincrement=True,
    ),
    Column("device_id", String(32), ForeignKey("devices.id"), nullable=False, index=True),
    Column("sender_device", String(32), nullable=False),
    Column("sender_key", String(43), nullable=False),
    Column("olm", Text, nullable=False),
    Column("created_at", Timestamp, nullable=False),
    sqlite_autoincrement=True,
)


# --- Registered accounts and the app gateway (docs/apps.md) -----------------------
# Phone numbers and e-mail addresses exist here only as HMACs under the node secret.

# Verified e-mail addresses and phone numbers: one account per identity, which is
# how two apps' accounts of one person are found and merged.
account_identities = Table(
    "account_identities",
    metadata,
    Column("kind", String(8), primary_key=True),
    Column("value_hmac", String(64), primary_key=True),
    Column("account_id", String(32), ForeignKey("accounts.id"), nullable=False, index=True),
    Column("verified_at", Timestamp, nullable=False),
)

# One-time codes sent by e-mail or SMS, until used, expired or out of attempts.
verifications = Table(
    "verifications",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("account_id", String(32), ForeignKey("accounts.id"), nullable=False, index=True),
    Column("channel", String(8), nullable=False),
    Column("target_hmac", String(64), nullable=False),
    Column("code_hmac", String(64), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("expires_at", Timestamp, nullable=False, index=True),
    # What the verification is for: "register" (upgrade the account) or "link"
    # (an app's managed account proving an identity; see apps.py).
    Column("purpose", String(16), nullable=False),
    Column("app_id", String(32)),
)

# A TOTP secret (sealed under the node secret: the node must read it to check
# codes); ``last_step`` refuses a code used once already.
totp_secrets = Table(
    "totp_secrets",
    metadata,
    Column("account_id", String(32), ForeignKey("accounts.id"), primary_key=True),
    Column("sealed_secret", Text, nullable=False),
    Column("confirmed_at", Timestamp),
    Column("last_step", BigInteger, nullable=False, default=0),
    Column("failures", Integer, nullable=False, default=0),
)

apps = Table(
    "apps",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("owner_account_id", String(32), ForeignKey("accounts.id"), nullable=False, index=True),
    Column("name", String(64), nullable=False),
    # The app's Ed25519 public key (base64): what it signs its messages with.
    Column("signing_key", String(44), nullable=False),
    Column("created_at", Timestamp, nullable=False),
)

# API keys of apps: shown once, kept as HMACs.
api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("app_id", String(32), ForeignKey("apps.id"), nullable=False, index=True),
    Column("key_hmac", String(64), nullable=False, unique=True),
    Column("scopes", String(256), nullable=False),
    Column("label", String(64)),
    Column("created_at", Timestamp, nullable=False),
    Column("expires_at", Timestamp),
    Column("revoked_at", Timestamp),
)

# An app's link to an account. ``key_id`` names the grant's own key, which is
# kept outside the database (settings.grant_key_dir): the app's data for the
# account is encrypted under it, and deleting the grant destroys it.
app_grants = Table(
    "app_grants",
    metadata,
    Column("account_id", String(32), ForeignKey("accounts.id"), primary_key=True),
    Column("app_id", String(32), ForeignKey("apps.id"), primary_key=True),
    Column("key_id", String(32), nullable=False, unique=True),
    Column("created_at", Timestamp, nullable=False),
)

# Custom media types ``app.<app-id>.<name>`` and the JSON Schema of their metadata.
app_media_types = Table(
    "app_media_types",
    metadata,
    Column("app_id", String(32), ForeignKey("apps.id"), primary_key=True),
    Column("name", String(64), primary_key=True),
    Column("schema", Text, nullable=False),
    Column("created_at", Timestamp, nullable=False),
)

# Which apps an account takes messages from: ``peer_address`` "" for the whole
# account, else for one contact (the narrowest wins). No row: any app.
app_allowlists = Table(
    "app_allowlists",
    metadata,
    Column("account_id", String(32), ForeignKey("accounts.id"), primary_key=True),
    Column("peer_address", String(300), primary_key=True),
    Column("apps", Text, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
)

# Where an app receives its users' messages; the signing secret is sealed under
# the node secret (the node must read it to sign).
webhooks = Table(
    "webhooks",
    metadata,
    Column("app_id", String(32), ForeignKey("apps.id"), primary_key=True),
    Column("url", String(2000), nullable=False),
    Column("sealed_secret", Text, nullable=False),
    Column("created_at", Timestamp, nullable=False),
)

# One webhook call per (message, receiving account of the app), retried with
# backoff; the log an app reads. The payload is built at each attempt, never stored.
webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("app_id", String(32), ForeignKey("apps.id"), nullable=False, index=True),
    Column("account_id", String(32), ForeignKey("accounts.id"), nullable=False, index=True),
    Column("message_id", String(32), ForeignKey("messages.id"), nullable=False, index=True),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", Timestamp, nullable=False, index=True),
    Column("lease_until", Timestamp),
    Column("last_status", Integer),
    Column("last_error", String(200)),
    Column("created_at", Timestamp, nullable=False),
    Column("finished_at", Timestamp),
)


# --- Conversations (docs/conversations.md) ----------------------------------------
# --- groups ---

# Who takes part in a group (conversations.kind "group"), with their role and
# state; ``invited_seq`` (the seq of their "invited"/"created" event) orders them,
# ``joined_seq``/``left_seq`` bound the part of the group's history a member may
# read (the seq of their "joined" and of their "left"/"removed" event).
conversation_members = Table(
    "conversation_members",
    metadata,
    Column("conversation_id", String(32), ForeignKey("conversations.id"), primary_key=True),
    Column("account_id", String(32), ForeignKey("accounts.id"), primary_key=True, index=True),
    Column("address", String(300), nullable=False),
    Column("role", String(8), nullable=False),
    Column("kind", String(8), nullable=False),
    Column("app_id", String(32)),
    Column("state", String(8), nullable=False),
    Column("invited_by", String(300)),
    Column("invited_seq", BigInteger),
    Column("joined_seq", BigInteger),
    Column("left_seq", BigInteger),
    Column("joined_at", Timestamp),
    Column("updated_at", Timestamp, nullable=False),
)
# --- plans and policies ---

# What one participant tightened on a conversation (only ever stricter than its
# plans); a NULL limit is not overridden. ``rate_unit``: second, minute, hour, day.
conversation_policies = Table(
    "conversation_policies",
    metadata,
    Column("conversation_id", String(32), ForeignKey("conversations.id"), primary_key=True),
    Column("account_id", String(32), ForeignKey("accounts.id"), primary_key=True, index=True),
    Column("retention_seconds", BigInteger),
    Column("max_participants", Integer),
    Column("max_message_bytes", Integer),
    Column("rate_count", Integer),
    Column("rate_unit", String(8)),
    Column("updated_at", Timestamp, nullable=False),
)
# --- preferences, contact requests and blocks ---

# Preferences (core/preferences.py): one row per (account, level, scope, name);
# ``scope`` is "" at account level, else the contact's address, the device id or
# the conversation id. ``value`` is JSON. ``accept_apps`` is kept in app_allowlists.
preferences = Table(
    "preferences",
    metadata,
    Column("account_id", String(32), ForeignKey("accounts.id"), primary_key=True),
    Column("level", String(16), primary_key=True),
    Column("scope", String(300), primary_key=True),
    Column("name", String(32), primary_key=True),
    Column("value", String(200), nullable=False),
    Column("updated_at", Timestamp, nullable=False),
)

# Two-way contact requests between addresses of this node: one row per
# (target, sender) ever, "pending", "accepted" or "declined" (a declined
# sender's later requests are dropped).
contact_requests = Table(
    "contact_requests",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("target_account_id", String(32), ForeignKey("accounts.id"), nullable=False),
    Column("sender_account_id", String(32), ForeignKey("accounts.id"), nullable=False, index=True),
    Column("sender_address", String(300), nullable=False),
    Column("note", String(280)),
    Column("state", String(16), nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("decided_at", Timestamp),
    UniqueConstraint(
        "target_account_id", "sender_account_id", name="uq_contact_requests_target_sender"
    ),
)

# Addresses an account blocked: their messages and requests are refused.
address_blocks = Table(
    "address_blocks",
    metadata,
    Column("account_id", String(32), ForeignKey("accounts.id"), primary_key=True),
    Column("address", String(300), primary_key=True),
    Column("blocked_at", Timestamp, nullable=False),
)
# --- groups across nodes ---

# Participants of a group whose accounts live on another of our nodes (on the
# host: the remote members; on a member's node: everyone not on this node), as
# the host's membership says (services/group_federation.py).
group_remote_members = Table(
    "group_remote_members",
    metadata,
    Column("conversation_id", String(32), ForeignKey("conversations.id"), primary_key=True),
    Column("address", String(300), primary_key=True, index=True),
    Column("role", String(8), nullable=False),
    Column("kind", String(8), nullable=False),
    Column("app_id", String(32)),
    Column("state", String(8), nullable=False),
    Column("invited_by", String(300)),
    Column("invited_seq", BigInteger),
    Column("joined_seq", BigInteger),
    Column("left_seq", BigInteger),
    Column("joined_at", Timestamp),
    Column("updated_at", Timestamp, nullable=False),
)

# The host's fan-out: one row per (group, member node, seq) not yet taken by
# that node; ``receivers`` is the JSON list of that node's addresses it is for.
# Rows of one (group, node) go in seq order; ``next_attempt_at`` is also the lease.
group_fanout = Table(
    "group_fanout",
    metadata,
    Column("conversation_id", String(32), ForeignKey("conversations.id"), primary_key=True),
    Column("domain", String(253), primary_key=True),
    Column("seq", BigInteger, primary_key=True),
    Column("receivers", Text, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", Timestamp, nullable=False, index=True),
)

# A member's node: messages its accounts sent to a group hosted elsewhere, until
# the host took them (it assigns the seq).
group_forwards = Table(
    "group_forwards",
    metadata,
    Column("message_id", String(32), primary_key=True),
    Column("conversation_id", String(32), ForeignKey("conversations.id"), nullable=False),
    Column("sender_account_id", String(32), ForeignKey("accounts.id"), nullable=False, index=True),
    Column("sender_device", String(32), nullable=False),
    Column("body", Text, nullable=False),
    Column("client_txn_id", String(128), nullable=False),
    Column("sent_at", Timestamp, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", Timestamp, nullable=False, index=True),
    Column("give_up_at", Timestamp, nullable=False),
    Column("revision", String(16), nullable=True),  # group revisions across nodes
    Column("replaces", String(32), nullable=True),  # group revisions across nodes
)
# --- receipts, edits and deletions ---

# Delivered and read receipts (core/revisions.py): one per (message, reader
# account, kind), for the message's sender account only; ``id`` orders that
# account's receipt feed. Erased with the message.
receipts = Table(
    "receipts",
    metadata,
    Column(
        "id",
        Integer().with_variant(BigInteger(), "postgresql"),
        primary_key=True,
        autoincrement=True,
    ),
    Column("message_id", String(32), ForeignKey("messages.id"), nullable=False),
    Column("conversation_id", String(32), nullable=False),
    Column("sender_account_id", String(32), nullable=False, index=True),
    Column("reader_account_id", String(32), nullable=False, index=True),
    Column("reader", String(300), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("at", Timestamp, nullable=False),
    UniqueConstraint("message_id", "reader_account_id", "kind", name="uq_receipts_once"),
)

# --- signed request replay memory ---

# Nonces of signed requests from our other nodes (protocol/openmsg/_extension.py),
# each taken once, kept until the request's time window has closed.
signed_request_nonces = Table(
    "signed_request_nonces",
    metadata,
    Column("origin", String(253), primary_key=True),
    Column("nonce", String(64), primary_key=True),
    Column("expires_at", Timestamp, nullable=False, index=True),
)
# --- contact requests across nodes ---

# The target's node: requests from addresses on other nodes (the sender has no
# account here; its node vouched for its name and whether it is registered).
remote_contact_requests = Table(
    "remote_contact_requests",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("target_account_id", String(32), ForeignKey("accounts.id"), nullable=False),
    Column("sender_address", String(300), nullable=False),
    Column("sender_name", String(40)),
    Column("sender_verified", Boolean, nullable=False),
    Column("note", String(280)),
    Column("state", String(16), nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("decided_at", Timestamp),
    UniqueConstraint(
        "target_account_id", "sender_address", name="uq_remote_contact_requests_target_sender"
    ),
)

# The sender's node: whom its accounts asked on other nodes; an accept from the
# target's node is taken only for such a request (services/request_federation.py).
outgoing_contact_requests = Table(
    "outgoing_contact_requests",
    metadata,
    Column("sender_account_id", String(32), ForeignKey("accounts.id"), primary_key=True),
    Column("target_address", String(300), primary_key=True),
    Column("sent_at", Timestamp, nullable=False),
)

# --- receipts, edits and deletions across nodes ---

# The sending node: the Openmsg nonce of each message its accounts sent to an
# address on another node (written with the outbox row, kept after delivery):
# the other node names the message by (sender, recipient, nonce). Goes with the
# message.
openmsg_sent = Table(
    "openmsg_sent",
    metadata,
    Column("message_id", String(32), ForeignKey("messages.id"), primary_key=True),
    Column("owner_account_id", String(32), nullable=False),
    Column("peer_address", String(300), nullable=False),
    Column("nonce", String(32), nullable=False),
    UniqueConstraint(
        "owner_account_id", "peer_address", "nonce", name="uq_openmsg_sent_reference"
    ),
)

# Edits, deletions and receipts waiting to reach another of our nodes, in ``id``
# order per domain (services/message_federation.py). ``message_id`` is the local
# message the row is about (the edit, the deletion event, the receipt's message):
# the row goes with it. ``item`` is the JSON of the wire item (an edit's body is
# read from its message when sent). ``next_attempt_at`` is also the lease.
openmsg_revisions_out = Table(
    "openmsg_revisions_out",
    metadata,
    Column(
        "id",
        Integer().with_variant(BigInteger(), "postgresql"),
        primary_key=True,
        autoincrement=True,
    ),
    Column("domain", String(253), nullable=False, index=True),
    Column("message_id", String(32), ForeignKey("messages.id"), nullable=False, index=True),
    Column("item", Text, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", Timestamp, nullable=False, index=True),
    Column("give_up_at", Timestamp, nullable=False),
)
