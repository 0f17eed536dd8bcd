"""What the node routes and stores. The body is opaque to the node: an
end-to-end ciphertext, or a body the node sealed to the receiving devices when
it had to see the text (docs/encryption.md). Never plain text at rest."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from openmessenger.core.apps import Provenance
from openmessenger.core.errors import InvalidInput
from openmessenger.core.ids import AccountId, Address, ConversationId, DeviceId, MessageId

MAX_BODY_CHARS = 65_536
MAX_CLIENT_TXN_ID_CHARS = 128
CLIENT_TXN_ID_PATTERN = rf"^[!-~]{{1,{MAX_CLIENT_TXN_ID_CHARS}}}$"
"""Printable ASCII without spaces: safe in a header, a log line and every database."""


def validate_body(body: str, *, field: str = "body") -> str:
    if not body:
        raise InvalidInput(field, "must not be empty")
    if len(body) > MAX_BODY_CHARS:
        raise InvalidInput(field, f"must be at most {MAX_BODY_CHARS} characters")
    if "\x00" in body:
        # Not storable in PostgreSQL text; ciphertext arrives encoded, never raw.
        raise InvalidInput(field, "must not contain NUL characters")
    return body


class Encryption(enum.StrEnum):
    """How a message is protected, as users see it."""

    END_TO_END = "end-to-end"
    """Only the devices of the accounts in the conversation can read it."""
    TRANSPORT = "transport-encrypted"
    """A node on the way read it (an Openmsg v1 link, or a plain-text send); at
    rest it is sealed to the receiving devices."""


class DeliveryStatus(enum.StrEnum):
    ACCEPTED = "accepted"
    DELIVERED = "delivered"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Message:
    id: MessageId
    conversation_id: ConversationId
    seq: int
    sender: Address
    sender_device: DeviceId
    recipient: Address
    body: str
    sent_at: datetime
    status: DeliveryStatus
    encryption: Encryption = Encryption.END_TO_END
    media_type: str = "text"
    metadata: str | None = None
    """The media type's metadata as canonical JSON (the node validated it)."""
    provenance: Provenance | None = None
    """Set when the message came through an app."""
    grant_key_id: str | None = None
    """The key of the (sender account, app) grant that body and metadata are kept
    under at rest (never shown; deleting the app's data destroys it)."""
    replaces: MessageId | None = None
    """An edit (``message.edit``) or deletion event (``message.delete``): the
    message it is about (core/revisions.py)."""
    edited_at: datetime | None = None
    """When the last edit of this message arrived (it has been edited)."""
    deleted_at: datetime | None = None
    """Set on a tombstone: the body and metadata were erased then."""


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One entry of a device's stream: ``position`` is strictly increasing per device."""

    device_id: DeviceId
    position: int
    message: Message


@dataclass(frozen=True, slots=True)
class OutboundSeal:
    """How a message to a remote address is first sent over Openmsg: the nonce
    of its package for good, and the salt and timestamp of its first hash."""

    nonce: str
    salt: str
    attempt_ts: int
    give_up_at: datetime
    lease_until: datetime
    """The sending process holds it until then: it makes the first attempt at once."""
    sealed_plaintext: str | None = None
    """For a transport-encrypted message: its text sealed under the node secret, kept
    with the outbox entry only until delivery (the stored body is sealed to devices)."""


@dataclass(frozen=True, slots=True)
class SendRequest:
    """A device asks to append ``body`` to its conversation with ``recipient``."""

    message_id: MessageId
    sender_account: AccountId
    sender: Address
    sender_device: DeviceId
    recipient: Address
    body: str
    client_txn_id: str | None
    sent_at: datetime
    outbound: OutboundSeal | None = None
    """Set when the recipient is on another node: the message joins the outbox."""
    encryption: Encryption = Encryption.END_TO_END
    media_type: str = "text"
    metadata: str | None = None
    provenance: Provenance | None = None
    grant_key_id: str | None = None


@dataclass(frozen=True, slots=True)
class ReceivedMessage:
    """A message that arrived over Openmsg for a local account, already checked."""

    message_id: MessageId
    conversation_id: ConversationId
    recipient_account: AccountId
    recipient: Address
    sender: Address
    nonce: str
    body: str
    sent_at: datetime
    encryption: Encryption = Encryption.TRANSPORT
    media_type: str = "text"
    metadata: str | None = None
    provenance: Provenance | None = None


@dataclass(frozen=True, slots=True)
class AppendResult:
    """What became of one :class:`SendRequest`.

    ``message`` is None when the request was refused (no connection); ``created``
    is False when ``client_txn_id`` named a message stored before.
    """

    message: Message | None
    created: bool
    events: tuple[StreamEvent, ...] = ()
    outbound: bool = False
    """The message went into the outbox (its recipient is on another node)."""


def stream_receivers(
    recipient_devices: Iterable[DeviceId],
    sender_devices: Iterable[DeviceId],
    sending_device: DeviceId,
) -> list[DeviceId]:
    """Whose streams a message joins: every device of the recipient's account and
    the sender's *other* devices, so that each device holds the whole conversation."""
    receivers = dict.fromkeys(recipient_devices)
    receivers.update(dict.fromkeys(d for d in sender_devices if d != sending_device))
    return list(receivers)
