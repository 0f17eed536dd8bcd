"""Records the services read and write through their ports."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from openmessenger.core.apps import Provenance
from openmessenger.core.envelope import Encryption
from openmessenger.core.ids import (
    AccountId,
    Address,
    ConversationId,
    DeviceId,
    MessageId,
    PassCodeId,
)
from openmessenger.core.passcodes import CodeState


class AccountKind(enum.StrEnum):
    ANONYMOUS = "anonymous"
    """Made silently by a device's first start; no personal data."""
    REGISTERED = "registered"
    """Verified (e-mail, SMS or TOTP), owned by a person or an organisation; may own apps."""
    MANAGED = "managed"
    """Made behind the scenes by an app for its user (``POST /v1/apps/{app}/accounts``)."""


class OwnerKind(enum.StrEnum):
    PERSON = "person"
    ORGANISATION = "organisation"


@dataclass(frozen=True, slots=True)
class Account:
    id: AccountId
    address: Address
    kind: AccountKind
    display_name: str | None
    created_at: datetime
    owner_kind: OwnerKind | None = None
    registered_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Device:
    id: DeviceId
    account_id: AccountId
    ed25519_key: str
    curve25519_key: str
    created_at: datetime
    app_id: str | None = None
    """Set for an app's backend acting as a managed account's device: everything it
    sends is tagged with the app."""
    node_held: bool = False
    """The node holds this app device's keys (a plain-HTTP app): it seals and opens
    on the app's behalf, and the app's messages are transport-encrypted."""


@dataclass(frozen=True, slots=True)
class AuthenticatedDevice:
    """Who is calling: the device and the account (and address) it belongs to."""

    device: Device
    account: Account
    api_key_id: str | None = None
    """Set when an app called with an API key on behalf of the account."""


@dataclass(frozen=True, slots=True)
class PassCode:
    id: PassCodeId
    owner_account_id: AccountId
    code_hmac: str
    bound_to: Address | None
    state: CodeState
    created_at: datetime
    expires_at: datetime
    used_by: Address | None
    used_at: datetime | None

    def effective_state(self, now: datetime) -> CodeState:
        if self.state is CodeState.LIVE and now >= self.expires_at:
            return CodeState.EXPIRED
        return self.state


@dataclass(frozen=True, slots=True)
class Contact:
    owner_account_id: AccountId
    address: Address
    display_name: str | None
    conversation_id: ConversationId
    connected_at: datetime
    accepts_messages: bool = True
    """The owner takes messages from the peer (Openmsg's "allow replies")."""
    peer_accepts_messages: bool = True
    """The peer takes the owner's messages."""


@dataclass(frozen=True, slots=True)
class OpenmsgLink:
    """A connection with an address on another node, as Openmsg keys it. ``sealed``
    holds the connection's codes and key, sealed under the node secret."""

    owner_account_id: AccountId
    owner_address: Address
    peer_address: Address
    conversation_id: ConversationId
    accepts_messages: bool
    sealed: str


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """One undelivered message to a remote address, with what sending it takes."""

    message_id: MessageId
    owner_account_id: AccountId
    sender: Address
    peer_address: Address
    body: str
    nonce: str
    salt: str
    attempt_ts: int
    attempts: int
    give_up_at: datetime
    sealed_link: str | None
    """None when the connection's link is gone (the message cannot be sent)."""
    sealed_plaintext: str | None = None
    """The text to deliver, sealed under the node secret (``body`` is then sealed
    to devices and unreadable here); None when ``body`` is what the peer gets."""
    encryption: Encryption = Encryption.TRANSPORT
    """END_TO_END: ``body`` is an om.megolm.v1 body, for a node that takes them."""
    sender_device: str = ""
    sent_at: datetime | None = None
    media_type: str = "text"
    metadata: str | None = None
    provenance: Provenance | None = None
    """The envelope beyond v1's, for a node that takes it (capability ``envelope``)."""

    @property
    def has_envelope(self) -> bool:
        return self.media_type != "text" or self.metadata is not None or self.provenance is not None


class OutboxVerdict(enum.StrEnum):
    DELIVERED = "delivered"
    FAILED = "failed"
    RETRY = "retry"


@dataclass(frozen=True, slots=True)
class OutboxOutcome:
    message_id: MessageId
    verdict: OutboxVerdict
    next_attempt_at: datetime | None = None
    """For RETRY: when to try again."""


# --- End-to-end encryption: public keys only (docs/encryption.md) -------------------


@dataclass(frozen=True, slots=True)
class SignedOneTimeKey:
    """A one-time or fallback Curve25519 key, signed by its device's Ed25519 key."""

    key_id: str
    key: str
    signature: str


@dataclass(frozen=True, slots=True)
class ClaimedOneTimeKey:
    """A key handed out for one new Olm session: a one-time key (then gone from
    the node) or, when none is left, the device's fallback key."""

    key_id: str
    key: str
    signature: str
    fallback: bool


@dataclass(frozen=True, slots=True)
class KeyCounts:
    one_time_keys: int
    """Unclaimed one-time keys (the fallback key not counted)."""
    fallback_key: bool


@dataclass(frozen=True, slots=True)
class DevicePublicKeys:
    """What others need to encrypt to a device."""

    device_id: DeviceId
    ed25519_key: str
    curve25519_key: str
    sealing_key: str | None = None
    sealing_key_signature: str | None = None


@dataclass(frozen=True, slots=True)
class AddressKeys:
    """An address's devices and the device list its account signed."""

    address: Address
    devices: tuple[DevicePublicKeys, ...]
    device_list: str | None
    """JSON of a ``protocol.e2e.SignedDeviceList``; None before the account published one."""
    encryption: Encryption


@dataclass(frozen=True, slots=True)
class AccountKeys:
    account_id: AccountId
    signing_key: str
    """The account signing key (Ed25519, public): set by the first accepted list."""
    device_list: str
    """JSON of the newest accepted ``SignedDeviceList``."""
    device_list_version: int
    recovery_auth_key: str | None
    """Checks a recovery (Ed25519, public); None until a key backup is set up."""


@dataclass(frozen=True, slots=True)
class LinkRequest:
    """A new device asking to join an account; ``code_hmac`` finds it by its code."""

    code_hmac: str
    device_id: DeviceId
    """The id the device gets once approved."""
    ed25519_key: str
    curve25519_key: str
    one_time_key: SignedOneTimeKey
    expires_at: datetime
    approved_at: datetime | None


@dataclass(frozen=True, slots=True)
class ToDeviceEvent:
    """An Olm message from one device of an account to another, held until acknowledged."""

    id: int
    device_id: DeviceId
    """The receiving device."""
    sender_device: DeviceId
    sender_key: str
    """The sending device's Curve25519 identity key."""
    olm: str
    """JSON of a ``protocol.e2e.OlmCiphertext``."""
    created_at: datetime
