"""Disappearing messages across our nodes: the ``ephemeral`` capability of our
Openmsg extension.

Two signed requests (services/signed_requests.py), never sent to an Openmsg v1
peer, and nothing of either is stored by either node:

- ``ephemeral-relay/`` sender's node -> recipient's node: one disappearing
  message from a device of the origin's domain to one device of the receiving
  node. The receiving node holds it in its relay exactly like a local one and
  answers ``{"ok": true, "id", "sent_at", "expires_at", "created"}`` (its own
  hold), or its refusal ``{"ok": false, "status", "code", "message", "field",
  "retry_after"}`` as its client API would render it.
- ``ephemeral-expired/`` recipient's node -> sender's node: the message ``id``
  was dropped undelivered when its hold ended. The sender's node takes it only
  for a message it sent to that very node and still remembers, answering
  ``{"ok": true}``; anything else gets an Openmsg error body (``SM_E003``).

A request whose signature, origin or shape does not verify gets an Openmsg
error body. docs/openmsg.md describes the wire shapes.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from openmessenger.protocol.ephemeral import MAX_BODY_CHARS_LIMIT, Lifespan

EPHEMERAL: Final = "ephemeral"
RELAY_PATH: Final = "/openmsg/x-openmessenger/ephemeral-relay/"
EXPIRED_PATH: Final = "/openmsg/x-openmessenger/ephemeral-expired/"

MessageIdStr = Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
AddressStr = Annotated[str, Field(min_length=3, max_length=300)]
DeviceStr = Annotated[str, Field(min_length=1, max_length=64)]


class _Wire(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RelayRequest(_Wire):
    id: MessageIdStr
    sender: AddressStr
    """An address of the signing origin's domain."""
    sender_device: DeviceStr
    recipient: AddressStr
    """An address of the receiving node."""
    recipient_device: DeviceStr
    body: str = Field(min_length=1, max_length=MAX_BODY_CHARS_LIMIT)
    """The om.olm.v1 body, as the sending device made it."""
    lifespan_seconds: Lifespan
    sent_at: AwareDatetime


class ExpiredRequest(_Wire):
    id: MessageIdStr
    sender: AddressStr
    """An address of the receiving node: whose message expired."""
    sender_device: DeviceStr
    recipient: AddressStr
    """An address of the signing origin's domain."""
    recipient_device: DeviceStr
    expired_at: AwareDatetime


class RelayAnswer(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    ok: Literal[True] = True
    id: MessageIdStr
    sent_at: AwareDatetime
    expires_at: AwareDatetime
    """When the receiving node drops it undelivered (its own hold, at most 120 s on)."""
    created: bool
    """False: a retry of a message it still holds; nothing new is held."""


class ExpiredAnswer(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    ok: Literal[True] = True

