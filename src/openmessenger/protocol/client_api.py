"""JSON shapes of the client API (``/v1/``), shared by the node and the SDK.

Field names here are a public contract (docs/api.md): add fields freely,
never rename or remove one without a deprecation path.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_serializer

from openmessenger.core.envelope import CLIENT_TXN_ID_PATTERN
from openmessenger.protocol.e2e import (
    MAX_ENCRYPTED_BODY_CHARS,
    Encryption,
    Key,
    OlmCiphertext,
    Signature,
    SignedBackupEntry,
    SignedDeviceList,
    SignedKey,
)

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
    kind: str = Field(description="anonymous, registered or managed")
    owner_kind: str | None = Field(
        default=None, description="person or organisation (registered accounts)"
    )


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

    encryption: Encryption = "end-to-end"
    """``transport-encrypted`` when the contact's node speaks only Openmsg v1: the
    nodes see the text. Clients then send plain text, which the node seals."""
    mode: Literal["history"] = "history"
    """The conversation's mode (``conversations.mode``): a 1:1 conversation is
    stored and synced (disappearing messages travel beside it, never stored)."""


class ContactList(Response):
    contacts: list[ContactOut]


class SendIn(Request):
    to: AddressStr
    body: str = Field(
        min_length=1,
        max_length=MAX_ENCRYPTED_BODY_CHARS,
        description="An om.megolm.v1 body as JSON text (end to end), or plain text of at "
        "most 65,536 characters, which the node seals before storing (transport-encrypted)",
    )
    encryption: Encryption = Field(
        default="transport-encrypted",
        description="end-to-end: body is an om.megolm.v1 body; transport-encrypted: plain text",
    )
    client_txn_id: str | None = Field(
        default=None,
        pattern=CLIENT_TXN_ID_PATTERN,
        description="Idempotency key: printable ASCII, no spaces, at most 128 characters",
    )
    media_type: str = Field(
        default="text",
        max_length=200,
        description="text, image, gif, reaction, file, audio, video, location, or an app's "
        "app.<app-id>.<name>; an envelope field the node reads and validates",
    )
    metadata: dict[str, Any] | None = Field(
        default=None,
        description="The media type's metadata (validated by the node; docs/apps.md). The "
        "content itself belongs in body",
    )
    app_signature: str | None = Field(
        default=None,
        max_length=200,
        description="An app's device only: the app key's signature over the envelope "
        "(docs/apps.md, provenance)",
    )


class ProvenanceOut(Response):
    """Which app a message came through, attested by the sender's node."""

    app_id: str
    app_key: str = Field(description="the app's Ed25519 public key (base64)")
    node: str = Field(description="the attesting node; its signing key checks attestation")
    attestation: str = Field(description="the node's Ed25519 signature over the envelope")
    message_id: str = Field(description="the message id the sending node attested")
    sender_device: str = Field(description="the sending device it attested")
    sent_at: int = Field(description="the time it attested (unix seconds)")
    app_signature: str | None = Field(
        default=None, description="the app's own signature (apps using the SDK)"
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
    encryption: Encryption = "end-to-end"
    """end-to-end: ``body`` is an om.megolm.v1 body; transport-encrypted: an
    om.sealed.v1 body the node sealed to the receiving devices."""
    media_type: str = "text"
    metadata: dict[str, Any] | None = None
    app: ProvenanceOut | None = Field(
        default=None, description="set when the message came through an app"
    )
    replaces: str | None = Field(
        default=None,
        description="message.edit / message.delete: the message it edits or deletes",
    )
    edited_at: datetime | None = Field(
        default=None, description="set when the message was edited (its last edit)"
    )
    deleted_at: datetime | None = Field(
        default=None, description="set on a tombstone: the message was deleted for everyone"
    )


class StreamEventOut(Response):
    type: Literal["message"] = "message"
    position: int
    message: MessageOut


class ToDeviceOut(Response):
    """An Olm message from another device of the same account."""

    id: int
    sender_device: str
    sender_key: str
    olm: OlmCiphertext


class SyncOut(Response):
    events: list[StreamEventOut]
    to_device: list[ToDeviceOut] = Field(
        default_factory=list,
        description="Device-to-device messages after ?to_device_since=; asking with a "
        "higher to_device_since acknowledges (deletes) the earlier ones",
    )
    next_since: int = Field(description="Pass as ?since= next time")
    has_more: bool


class MessageList(Response):
    messages: list[MessageOut]
    has_more: bool = Field(description="Ask again with after_seq = the last seq")


# -- end-to-end keys (docs/encryption.md) -------------------------------------------


class KeysUploadIn(Request):
    """Public keys a device publishes; every key is signed by the device's Ed25519 key."""

    one_time_keys: list[SignedKey] = Field(default_factory=list, max_length=100)
    fallback_key: SignedKey | None = None
    sealing_key: Key | None = None
    sealing_key_signature: Signature | None = None


class KeyCountsOut(Response):
    one_time_keys: int = Field(description="Unclaimed one-time keys the node holds")
    fallback_key: bool


class DeviceKeysOut(Response):
    device_id: str
    ed25519_key: str
    curve25519_key: str
    sealing_key: str | None
    sealing_key_signature: str | None


class AddressKeysOut(Response):
    """An address's signed device list and every device the node lists for it.
    Clients encrypt only to devices the signed list names with the same keys."""

    address: str
    device_list: SignedDeviceList | None
    devices: list[DeviceKeysOut]
    encryption: Encryption


class ClaimIn(Request):
    address: AddressStr
    devices: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        min_length=1, max_length=256
    )


class ClaimedKey(Response):
    key_id: str
    key: str
    signature: str
    fallback: bool


class ClaimOut(Response):
    one_time_keys: dict[str, ClaimedKey] = Field(
        description="device id -> a one-time key (or the fallback key when none is left)"
    )


class DeviceListIn(Request):
    device_list: SignedDeviceList


class ToDeviceMessage(Request):
    device_id: str = Field(min_length=1, max_length=64)
    olm: OlmCiphertext


class ToDeviceIn(Request):
    """Olm messages to other devices of the caller's own account."""

    messages: list[ToDeviceMessage] = Field(min_length=1, max_length=100)


class OwnDeviceOut(Response):
    device_id: str
    ed25519_key: str
    curve25519_key: str
    created_at: datetime
    current: bool = Field(description="The device making the request")


class OwnDeviceList(Response):
    devices: list[OwnDeviceOut]
    device_list: SignedDeviceList | None


class RevokeDeviceIn(Request):
    device_list: SignedDeviceList = Field(
        description="The account's new signed device list, without the revoked device"
    )


class LinkRequestIn(Request):
    """A new device asks to join an existing account (no token yet)."""

    ed25519_key: Base64Key
    curve25519_key: Base64Key
    one_time_key: SignedKey
    challenge: str = Field(min_length=1, max_length=200)
    signature: str = Field(min_length=86, max_length=88)


class LinkRequestOut(Response):
    code: str = Field(description="Show it on the new device; an existing device approves it")
    expires_at: datetime


class LinkRequestInfo(Response):
    device_id: str = Field(description="The id the new device gets once approved")
    ed25519_key: str
    curve25519_key: str
    one_time_key: SignedKey
    expires_at: datetime


class LinkApproveIn(Request):
    device_list: SignedDeviceList = Field(description="The new list, with the new device")
    secrets: OlmCiphertext = Field(description="For the new device: account secrets, room keys")


class BackupSetupIn(Request):
    recovery_auth_key: Key = Field(
        description="Public half of the key derived from the recovery key; proves recovery"
    )
    signature: Signature = Field(
        description="The account signing key over recovery_auth_signed_bytes(address, key)"
    )


class BackupEntriesIn(Request):
    entries: dict[Annotated[str, Field(min_length=1, max_length=100)], SignedBackupEntry] = Field(
        max_length=1000
    )


class BackupOut(Response):
    entries: dict[str, SignedBackupEntry]


class RecoveryIn(Request):
    """A new device joins an account with a proof derived from its recovery key."""

    address: AddressStr
    ed25519_key: Base64Key
    curve25519_key: Base64Key
    challenge: str = Field(min_length=1, max_length=200)
    signature: str = Field(min_length=86, max_length=88)
    recovery_signature: Signature


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
