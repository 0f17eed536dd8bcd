"""JSON shapes of the client API (``/v1/``), shared by the node and the SDK.

Field names here are a public contract (docs/api.md): add fields freely,
never rename or remove one without a deprecation path.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_serializer

from openmessenger.core.envelope import MAX_BODY_CHARS, MAX_CLIENT_TXN_ID_CHARS

API_PREFIX = "/v1"
CHALLENGE_CONTEXT = "openmessenger/v1/device-auth"
"""Prefix of the bytes a device signs to prove possession of its Ed25519 key."""

Base64Key = Annotated[str, Field(min_length=43, max_length=44, pattern=r"^[A-Za-z0-9+/]+=?$")]
AddressStr = Annotated[
    str, Field(min_length=3, max_length=300, examples=["4821937*chat.example.org"])
]
PassCodeStr = Annotated[str, Field(pattern=r"^[0-9]{6}$", examples=["042917"])]


def signed_challenge_bytes(challenge: str, domain: str) -> bytes:
    """What a device signs: the context, the node's domain and the challenge."""
    return f"{CHALLENGE_CONTEXT}\n{domain}\n{challenge}".encode()


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    @field_serializer("*", when_used="json", check_fields=False)
    def _rfc3339(self, value: object) -> object:
        # RFC 3339 UTC with a Z, whole microseconds: one spelling on every backend.
        if isinstance(value, datetime):
            return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return value


class ChallengeOut(Model):
    challenge: str
    domain: str
    expires_at: datetime


class DeviceKeys(Model):
    ed25519_key: Base64Key = Field(
        description="The device's Ed25519 identity key (unpadded base64)"
    )
    challenge: str = Field(min_length=1, max_length=200)
    signature: str = Field(
        min_length=86,
        max_length=88,
        description="Ed25519 signature over signed_challenge_bytes(challenge, domain)",
    )


class RegisterDeviceIn(DeviceKeys):
    curve25519_key: Base64Key = Field(description="The device's Curve25519 identity key")
    display_name: str | None = Field(default=None, max_length=200)


class DeviceSessionOut(Model):
    device_id: str
    address: str
    display_name: str | None
    access_token: str


class MeOut(Model):
    address: str
    display_name: str | None
    device_id: str


class SetNameIn(Model):
    display_name: str = Field(max_length=200)


class IssueCodeIn(Model):
    for_address: AddressStr | None = Field(default=None, alias="for")


class PassCodeOut(Model):
    id: str
    pass_code: str
    expires_at: datetime
    for_address: str | None = Field(alias="for")


class PassCodeInfo(Model):
    id: str
    state: Literal["live", "used", "withdrawn", "expired"]
    for_address: str | None = Field(alias="for")
    created_at: datetime
    expires_at: datetime
    used_by: str | None
    used_at: datetime | None


class PassCodeList(Model):
    codes: list[PassCodeInfo]


class ConnectIn(Model):
    address: AddressStr
    pass_code: PassCodeStr


class ContactOut(Model):
    address: str
    display_name: str | None
    conversation_id: str
    connected_at: datetime


class ContactList(Model):
    contacts: list[ContactOut]


class SendIn(Model):
    to: AddressStr
    body: str = Field(min_length=1, max_length=MAX_BODY_CHARS)
    client_txn_id: str | None = Field(
        default=None, min_length=1, max_length=MAX_CLIENT_TXN_ID_CHARS
    )


class MessageOut(Model):
    id: str
    conversation_id: str
    seq: int
    sender: str = Field(alias="from")
    sender_device: str
    recipient: str = Field(alias="to")
    body: str
    sent_at: datetime
    status: Literal["accepted", "delivered", "failed"]


class StreamEventOut(Model):
    type: Literal["message"] = "message"
    position: int
    message: MessageOut


class SyncOut(Model):
    events: list[StreamEventOut]
    next_since: int = Field(description="Pass as ?since= next time")
    has_more: bool


class MessageList(Model):
    messages: list[MessageOut]


class ProblemField(Model):
    field: str
    message: str


class Problem(Model):
    """RFC 9457 problem details, with a stable machine ``code``."""

    type: str = "about:blank"
    title: str
    status: int
    code: str
    detail: str | None = None
    field: str | None = None
    errors: list[ProblemField] | None = None
