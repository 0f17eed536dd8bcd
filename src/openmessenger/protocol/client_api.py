"""JSON shapes of the client API (``/v1/``), shared by the node and the SDK.

Field names here are a public contract (docs/api.md): add fields freely,
never rename or remove one without a deprecation path.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_serializer

from openmessenger.core.envelope import CLIENT_TXN_ID_PATTERN, MAX_BODY_CHARS

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


class _Model(BaseModel):
    @field_serializer("*", when_used="json", check_fields=False)
    def _rfc3339(self, value: object) -> object:
        # RFC 3339 UTC with a Z, whole microseconds: one spelling on every backend.
        if isinstance(value, datetime):
            return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return value


class Request(_Model):
    """What a client sends: unknown fields are an error, so typos are caught."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class Response(_Model):
    """What the node answers: readers ignore fields they do not know, so the
    node can add fields without breaking older clients."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)


class ChallengeOut(Response):
    challenge: str
    domain: str
    expires_at: datetime


class DeviceKeys(Request):
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


class DeviceSessionOut(Response):
    device_id: str
    address: str
    display_name: str | None
    access_token: str


class MeOut(Response):
    address: str
    display_name: str | None
    device_id: str


class SetNameIn(Request):
    display_name: str = Field(max_length=200)


class IssueCodeIn(Request):
    for_address: AddressStr | None = Field(default=None, alias="for")


class PassCodeOut(Response):
    id: str
    pass_code: str
    expires_at: datetime
    for_address: str | None = Field(alias="for")


class PassCodeInfo(Response):
    id: str
    state: Literal["live", "used", "withdrawn", "expired"]
    for_address: str | None = Field(alias="for")
    created_at: datetime
    expires_at: datetime
    used_by: str | None
    used_at: datetime | None


class PassCodeList(Response):
    codes: list[PassCodeInfo]


class ConnectIn(Request):
    address: AddressStr
    pass_code: PassCodeStr
    allow_replies: bool = Field(
        default=True,
        description="False: a one-way connection; you send, the other address cannot answer",
    )


class ContactOut(Response):
    address: str
    display_name: str | None
    conversation_id: str
    connected_at: datetime
    accepts_messages: bool = True
    """You take messages from this contact."""
    peer_accepts_messages: bool = True
    """This contact takes your messages."""


class ContactList(Response):
    contacts: list[ContactOut]


class SendIn(Request):
    to: AddressStr
    body: str = Field(min_length=1, max_length=MAX_BODY_CHARS)
    client_txn_id: str | None = Field(
        default=None,
        pattern=CLIENT_TXN_ID_PATTERN,
        description="Idempotency key: printable ASCII, no spaces, at most 128 characters",
    )


class MessageOut(Response):
    id: str
    conversation_id: str
    seq: int
    sender: str = Field(alias="from")
    sender_device: str
    recipient: str = Field(alias="to")
    body: str
    sent_at: datetime
    status: Literal["accepted", "delivered", "failed"]


class StreamEventOut(Response):
    type: Literal["message"] = "message"
    position: int
    message: MessageOut


class SyncOut(Response):
    events: list[StreamEventOut]
    next_since: int = Field(description="Pass as ?since= next time")
    has_more: bool


class MessageList(Response):
    messages: list[MessageOut]
    has_more: bool = Field(description="Ask again with after_seq = the last seq")


class ProblemField(Response):
    field: str
    message: str


class Problem(Response):
    """RFC 9457 problem details, with a stable machine ``code``."""

    type: str = "about:blank"
    title: str
    status: int
    code: str
    detail: str | None = None
    field: str | None = None
    errors: list[ProblemField] | None = None
