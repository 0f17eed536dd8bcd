"""Wire formats of ephemeral (disappearing) messages, shared by node and SDK.

An ephemeral message goes from one device to one other device. Its ``body`` is
an ``om.olm.v1`` body: one Olm message to the receiving device (the pairwise
channel of docs/encryption.md), whose plaintext is an
:class:`EphemeralPlaintext`. The plaintext repeats the envelope's sender,
sending device, recipient, receiving device and lifespan, so the node (or
anyone between) cannot re-address a ciphertext or stretch its lifespan: the
receiving client compares them with the envelope.

The JSON of ``/v1/ephemeral`` and of the stream's ``ephemeral`` and
``ephemeral.expired`` events is here too (docs/api.md is the contract).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from openmessenger.core.envelope import CLIENT_TXN_ID_PATTERN
from openmessenger.core.ephemeral import MAX_LIFESPAN_SECONDS, MIN_LIFESPAN_SECONDS
from openmessenger.protocol.client_api import AddressStr, Request, Response
from openmessenger.protocol.e2e import DeviceIdStr, Key, OlmCiphertext

ALG_OLM: Final = "om.olm.v1"
PLAINTEXT_TYPE: Final = "om.ephemeral.v1"
MAX_BODY_CHARS_LIMIT = 65_536
"""No node setting lets an ephemeral body be longer than this."""
EPHEMERAL_EVENT: Final = "ephemeral"
EXPIRED_EVENT: Final = "ephemeral.expired"

Lifespan = Annotated[int, Field(ge=MIN_LIFESPAN_SECONDS, le=MAX_LIFESPAN_SECONDS)]


class _Wire(BaseModel):
    # Strict, like protocol/e2e.py: what another client made must parse exactly.
    model_config = ConfigDict(extra="forbid", frozen=True)


class EphemeralBody(_Wire):
    """What the node relays: one Olm message for the receiving device."""

    alg: Literal["om.olm.v1"] = ALG_OLM
    sender_key: Key
    """The sending device's Curve25519 identity key (the Olm session is with it)."""
    olm: OlmCiphertext


class EphemeralPlaintext(_Wire):
    """What the Olm message holds: the text and the envelope it was sent in."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    type: Literal["om.ephemeral.v1"] = PLAINTEXT_TYPE
    text: Annotated[str, Field(min_length=1)]
    sender: AddressStr = Field(alias="from")
    sender_device: DeviceIdStr
    recipient: AddressStr = Field(alias="to")
    recipient_device: DeviceIdStr
    lifespan_seconds: Lifespan


# -- the client API --------------------------------------------------------------------


class EphemeralSendIn(Request):
    to: AddressStr
    device: Annotated[str, Field(min_length=1, max_length=64)] = Field(
        description="The one device of `to` that may receive it"
    )
    body: str = Field(
        min_length=1,
        max_length=MAX_BODY_CHARS_LIMIT,
        description="An om.olm.v1 body for that device; the node's ephemeral_max_body_chars "
        "setting bounds its length",
    )
    lifespan_seconds: Lifespan = Field(
        description="How long the receiving client keeps the text after it arrives"
    )
    client_txn_id: str | None = Field(
        default=None,
        pattern=CLIENT_TXN_ID_PATTERN,
        description="Idempotency key: a retry gets the same id, and is relayed once while "
        "the first is still waiting",
    )


class EphemeralSentOut(Response):
    id: str
    to: str
    device: str
    status: Literal["pending"] = "pending"
    lifespan_seconds: int
    sent_at: datetime
    expires_at: datetime = Field(
        description="If the device has not taken it by then, the node drops it and tells you"
    )


class EphemeralMessageOut(Response):
    id: str
    sender: str = Field(alias="from")
    sender_device: str
    recipient: str = Field(alias="to")
    device: str = Field(description="The receiving device")
    body: str
    lifespan_seconds: int
    sent_at: datetime
    expires_at: datetime


class EphemeralEventOut(Response):
    type: Literal["ephemeral"] = EPHEMERAL_EVENT
    message: EphemeralMessageOut


class EphemeralExpiredOut(Response):
    """To the sending device: the message ``id`` was dropped undelivered."""

    type: Literal["ephemeral.expired"] = EXPIRED_EVENT
    id: str
    to: str
    device: str
    sent_at: datetime
    expired_at: datetime


EphemeralStreamEvent = Annotated[
    EphemeralEventOut | EphemeralExpiredOut, Field(discriminator="type")
]


class EphemeralPollOut(Response):
    events: list[EphemeralStreamEvent] = Field(
        description="What waited for this device, oldest first; the node has forgotten it"
    )
