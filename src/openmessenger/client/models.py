"""What the SDK returns: frozen dataclasses, independent of the wire models.

The wire models (``protocol.client_api``) follow the JSON; these follow what a
program using the SDK wants to read (``message.text``, not ``body``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from openmessenger.client.apps import AppTag
from openmessenger.core.ids import Address, ConversationId, DeviceId, MessageId, PassCodeId
from openmessenger.protocol import client_api as wire
from openmessenger.protocol.e2e import Encryption

CodeState = Literal["live", "used", "withdrawn", "expired"]
DeliveryStatus = Literal["accepted", "delivered", "failed"]


@dataclass(frozen=True, slots=True)
class Me:
    address: Address
    display_name: str | None
    device_id: DeviceId

    @classmethod
    def from_wire(cls, me: wire.MeOut) -> Me:
        return cls(Address(me.address), me.display_name, DeviceId(me.device_id))


@dataclass(frozen=True, slots=True)
class IssuedCode:
    """A fresh pass code. ``pass_code`` is shown this once: the node keeps only a MAC."""

    id: PassCodeId
    pass_code: str
    expires_at: datetime
    for_address: Address | None

    @classmethod
    def from_wire(cls, code: wire.PassCodeOut) -> IssuedCode:
        return cls(
            id=PassCodeId(code.id),
            pass_code=code.pass_code,
            expires_at=code.expires_at,
            for_address=_optional_address(code.for_address),
        )


@dataclass(frozen=True, slots=True)
class CodeInfo:
    """A code as the node remembers it: its state, never its digits."""

    id: PassCodeId
    state: CodeState
    for_address: Address | None
    created_at: datetime
    expires_at: datetime
    used_by: Address | None
    used_at: datetime | None

    @classmethod
    def from_wire(cls, code: wire.PassCodeInfo) -> CodeInfo:
        return cls(
            id=PassCodeId(code.id),
            state=code.state,
            for_address=_optional_address(code.for_address),
            created_at=code.created_at,
            expires_at=code.expires_at,
            used_by=_optional_address(code.used_by),
            used_at=code.used_at,
        )


@dataclass(frozen=True, slots=True)
class Contact:
    address: Address
    display_name: str | None
    conversation_id: ConversationId
    connected_at: datetime
    accepts_messages: bool = True
    """You take messages from this contact."""
    peer_accepts_messages: bool = True
    """This contact takes your messages (False: it connected without replies)."""
    encryption: Encryption = "end-to-end"

    @classmethod
    def from_wire(cls, contact: wire.ContactOut) -> Contact:
        return cls(
            address=Address(contact.address),
            display_name=contact.display_name,
            conversation_id=ConversationId(contact.conversation_id),
            connected_at=contact.connected_at,
            accepts_messages=contact.accepts_messages,
            peer_accepts_messages=contact.peer_accepts_messages,
            encryption=contact.encryption,
        )


@dataclass(frozen=True, slots=True)
class Message:
    """One message. ``position`` is the place in this device's stream; it is set
    for messages from ``sync``/``listen`` and None for ``send``/``history``."""

    id: MessageId
    conversation_id: ConversationId
    seq: int
    sender: Address
    sender_device: DeviceId
    recipient: Address
    text: str
    """The decrypted text; empty when ``error`` says why it could not be read."""
    sent_at: datetime
    status: DeliveryStatus
    position: int | None = None
    encryption: Encryption = "end-to-end"
    """``transport-encrypted``: the nodes on the way could read it (an Openmsg v1 link,
    or a plain-text send); ``end-to-end``: only the devices of the two accounts."""
    error: str | None = None
    """Why the body could not be decrypted (no key for this device, a replay, ...)."""
    media_type: str = "text"
    metadata: dict[str, Any] | None = None
    """The media type's metadata (``image``: mime, width, ...), as the node validated it."""
    app: AppTag | None = None
    """The app the message came through, its tag checked (None: a native device)."""
    replaces: MessageId | None = None
    """``message.edit``/``message.delete``: the message it edits or deletes."""
    edited_at: datetime | None = None
    """Set when the message was edited (``text`` is then its latest version in history)."""
    deleted_at: datetime | None = None
    """Set on what is left of a message deleted for everyone (no text)."""

    @classmethod
    def from_wire(
        cls,
        message: wire.MessageOut,
        position: int | None = None,
        *,
        text: str | None = None,
        error: str | None = None,
        app: AppTag | None = None,
    ) -> Message:
        return cls(
            id=MessageId(message.id),
            conversation_id=ConversationId(message.conversation_id),
            seq=message.seq,
            sender=Address(message.sender),
            sender_device=DeviceId(message.sender_device),
            recipient=Address(message.recipient),
            text=text if text is not None else "",
            sent_at=message.sent_at,
            status=message.status,
            position=position,
            encryption=message.encryption,
            error=error,
            media_type=message.media_type,
            metadata=message.metadata,
            app=app,
            replaces=MessageId(message.replaces) if message.replaces else None,
            edited_at=message.edited_at,
            deleted_at=message.deleted_at,
        )


@dataclass(frozen=True, slots=True)
class OwnDevice:
    device_id: DeviceId
    fingerprint: str
    created_at: datetime
    current: bool
    signed: bool
    """Named in the account's signed device list (others are never encrypted to)."""


@dataclass(frozen=True, slots=True)
class LinkRequest:
    """What a new device shows; an existing device approves it with ``code``."""

    code: str
    fingerprint: str
    expires_at: datetime


def _optional_address(value: str | None) -> Address | None:
    return None if value is None else Address(value)
