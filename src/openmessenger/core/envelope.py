"""What the node routes and stores. The body is opaque: plain text before
end-to-end encryption, ciphertext after, in the same field."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from openmessenger.core.errors import InvalidInput
from openmessenger.core.ids import Address, ConversationId, DeviceId, MessageId

MAX_BODY_CHARS = 65_536
MAX_CLIENT_TXN_ID_CHARS = 128
CLIENT_TXN_ID_PATTERN = r"^[!-~]{1,128}$"
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


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One entry of a device's stream: ``position`` is strictly increasing per device."""

    device_id: DeviceId
    position: int
    message: Message
