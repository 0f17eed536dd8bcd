"""Wire formats of end-to-end encryption (docs/encryption.md is the prose).

Everything here is pure: JSON shapes and the exact bytes that are signed.
Keys, signatures and ciphertexts are unpadded standard base64, as vodozemac
writes them. A client in another language interoperates by producing these
shapes and signing these bytes.

Three kinds of body travel in a message's ``body`` field:

- ``om.megolm.v1`` (:class:`EncryptedBody`): end to end. A Megolm ciphertext of
  a :class:`GroupPlaintext`, plus the Megolm session key for each device that
  does not have it yet, each wrapped in an Olm message for that device.
- ``om.sealed.v1`` (:class:`SealedBody`): transport-encrypted. The node had the
  plaintext (an Openmsg v1 peer, or a client that sent plain text) and sealed
  it to the receiving devices' sealing keys before storing it.
- plain text, only ever on the wire between a client and its node, or to a v1 peer.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

ALG_MEGOLM: Final = "om.megolm.v1"
ALG_SEALED: Final = "om.sealed.v1"

END_TO_END: Final = "end-to-end"
TRANSPORT_ENCRYPTED: Final = "transport-encrypted"
Encryption = Literal["end-to-end", "transport-encrypted"]
"""How a message (or a conversation) is protected, as users see it."""

MAX_ENCRYPTED_BODY_CHARS = 524_288
"""An ``om.megolm.v1`` body (ciphertext and key shares) may be this long.
The plaintext inside stays within the 65,536 characters of any message."""

DEVICE_LIST_TYPE: Final = "om.device-list.v1"

_B64 = r"^[A-Za-z0-9+/]+$"
Key = Annotated[str, Field(min_length=43, max_length=43, pattern=_B64)]
"""A 32-byte public key, unpadded base64."""
Signature = Annotated[str, Field(min_length=86, max_length=86, pattern=_B64)]
"""A 64-byte Ed25519 signature, unpadded base64."""
Ciphertext = Annotated[str, Field(min_length=1, max_length=MAX_ENCRYPTED_BODY_CHARS, pattern=_B64)]
DeviceIdStr = Annotated[str, Field(min_length=1, max_length=64)]
AddressStr = Annotated[str, Field(min_length=3, max_length=300)]
KeyId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9+/=_-]+$")]


class _Wire(BaseModel):
    # Strict both ways: a body another client made must parse exactly, and an
    # unknown field is a sign of a newer format this client must not half-read.
    model_config = ConfigDict(extra="forbid", frozen=True)


def canonical_json(value: Any) -> bytes:
    """The one byte form of a JSON value that signatures cover: sorted keys,
    no whitespace, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


# -- signed statements ------------------------------------------------------------


def one_time_key_signed_bytes(device_id: str, key_id: str, key: str) -> bytes:
    """What a device signs, with its Ed25519 key, for each one-time or fallback key."""
    return f"openmessenger/v1/one-time-key\n{device_id}\n{key_id}\n{key}".encode()


def sealing_key_signed_bytes(device_id: str, key: str) -> bytes:
    """What a device signs for its sealing key (the key the node seals to)."""
    return f"openmessenger/v1/sealing-key\n{device_id}\n{key}".encode()


def recovery_signed_bytes(domain: str, address: str, challenge: str, ed25519_key: str) -> bytes:
    """What the recovery key's signing half signs to add a new device to an account."""
    return f"openmessenger/v1/recovery\n{domain}\n{address}\n{challenge}\n{ed25519_key}".encode()


def recovery_auth_signed_bytes(address: str, recovery_auth_key: str) -> bytes:
    """What the account signing key signs to set up a backup: only a device that
    holds it (not a stolen access token) can say which key may recover the account."""
    return f"openmessenger/v1/recovery-auth-key\n{address}\n{recovery_auth_key}".encode()


def backup_entry_signed_bytes(address: str, entry_id: str, entry: BackupEntry) -> bytes:
    """What the account signing key signs for each backup entry. Anyone who knows
    the backup key can encrypt to it; only the account's devices can sign, so a
    restored device takes no entry the node (or anyone else) wrote."""
    return (
        f"openmessenger/v1/backup-entry\n{address}\n{entry_id}\n"
        f"{entry.ciphertext}\n{entry.mac}\n{entry.ephemeral_key}"
    ).encode()


def link_signed_bytes(domain: str, challenge: str, ed25519_key: str) -> bytes:
    """What a device asking to be linked signs to prove it holds its key."""
    return f"openmessenger/v1/link-request\n{domain}\n{challenge}\n{ed25519_key}".encode()


class SignedKey(_Wire):
    """A one-time or fallback key, signed by its device."""

    key_id: KeyId
    key: Key
    signature: Signature


class ListedDevice(_Wire):
    device_id: DeviceIdStr
    ed25519_key: Key
    curve25519_key: Key


class Rotation(_Wire):
    """How often a device replaces its outbound Megolm sessions."""

    messages: int = Field(ge=1, le=1_000_000)
    seconds: int = Field(ge=60, le=365 * 24 * 3600)


class DeviceList(_Wire):
    """The account's devices as the account signing key vouches for them.

    ``version`` only grows; ``backup_key`` is the public key sessions are backed
    up to (None until a recovery key is set up); ``rotation`` is the account's
    Megolm rotation period (signed, so a node cannot lengthen it)."""

    type: Literal["om.device-list.v1"] = DEVICE_LIST_TYPE
    address: AddressStr
    signing_key: Key
    version: int = Field(ge=1)
    backup_key: Key | None = None
    rotation: Rotation | None = None
    devices: list[ListedDevice] = Field(max_length=256)

    def signed_bytes(self) -> bytes:
        """The canonical JSON of the list; fields that are null are left out, so a
        field added later does not change what older lists signed."""
        return canonical_json(self.model_dump(mode="json", exclude_none=True))


class SignedDeviceList(_Wire):
    """A device list and the account signing key's signature over ``list.signed_bytes()``."""

    list: DeviceList
    signature: Signature


# -- message bodies ------------------------------------------------------------------


class OlmCiphertext(_Wire):
    """An Olm message: ``type`` 0 is a pre-key message (it opens a session), 1 a normal one."""

    type: Literal[0, 1]
    body: Ciphertext


class KeyShare(_Wire):
    """A Megolm session key for one receiving device, inside an Olm message to it.
    ``sender_key`` is the sending device's Curve25519 identity key."""

    device_id: DeviceIdStr
    olm: OlmCiphertext


class EncryptedBody(_Wire):
    """An end-to-end encrypted message body (``alg`` = ``om.megolm.v1``)."""

    alg: Literal["om.megolm.v1"] = ALG_MEGOLM
    sender_key: Key
    """The sending device's Curve25519 identity key: the Olm sessions of the key shares
    are with it, and receivers find the Megolm session under (sender_key, session_id)."""
    session_id: Annotated[str, Field(min_length=1, max_length=64)]
    ciphertext: Ciphertext
    key_shares: list[KeyShare] = Field(default_factory=list, max_length=256)


class KeySharesOnly(_Wire):
    """What a node keeps of an om.megolm.v1 body deleted for everyone: the key
    shares, without the ciphertext, so that a device that had not read them yet
    can still open the session's other messages (core/revisions.py)."""

    alg: Literal["om.megolm.v1"] = ALG_MEGOLM
    sender_key: Key
    session_id: Annotated[str, Field(min_length=1, max_length=64)]
    key_shares: list[KeyShare] = Field(min_length=1, max_length=256)


class GroupPlaintext(_Wire):
    """What a Megolm ciphertext holds. ``from``/``to`` bind it to its envelope, so a
    node cannot re-address a ciphertext to another conversation."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    type: Literal["text"] = "text"
    text: Annotated[str, Field(min_length=1)]
    sender: AddressStr = Field(alias="from")
    recipient: AddressStr = Field(alias="to")
    replaces: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    """An edit: the id of the message it replaces (absent otherwise)."""


class RoomKey(_Wire):
    """What a :class:`KeyShare`'s Olm message holds."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    type: Literal["room_key"] = "room_key"
    sender: AddressStr = Field(alias="from")
    recipient: AddressStr = Field(alias="to")
    session_id: Annotated[str, Field(min_length=1, max_length=64)]
    session_key: Ciphertext


class SealedKey(_Wire):
    """The body key, encrypted to one device's sealing key (vodozemac PkEncryption)."""

    ciphertext: Ciphertext
    mac: Ciphertext
    ephemeral_key: Key


class SealedBody(_Wire):
    """A body the node sealed: ``ciphertext`` is a NaCl secretbox (nonce first) of the
    UTF-8 text under a random key, and ``keys`` holds that key for each device."""

    alg: Literal["om.sealed.v1"] = ALG_SEALED
    ciphertext: Ciphertext
    keys: dict[str, SealedKey] = Field(max_length=512)


# -- device-to-device (to-device events, Olm) ----------------------------------------


class ExportedRoomKey(_Wire):
    """A Megolm session as another device of the account (or the backup) receives it."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    sender: AddressStr = Field(alias="from")
    recipient: AddressStr = Field(alias="to")
    sender_key: Key
    session_id: Annotated[str, Field(min_length=1, max_length=64)]
    exported_key: Ciphertext


class AccountSecrets(_Wire):
    """Sent by the approving device to a newly linked one."""

    type: Literal["account_secrets"] = "account_secrets"
    signing_key_seed: Key


class RoomKeyBundle(_Wire):
    """Megolm sessions shared with another device of the same account (history)."""

    type: Literal["room_keys"] = "room_keys"
    sessions: list[ExportedRoomKey] = Field(max_length=10_000)


ToDevicePayload = Annotated[AccountSecrets | RoomKeyBundle, Field(discriminator="type")]


class ToDevicePlaintext(_Wire):
    """What a to-device Olm message holds: the payload and who it is from and for,
    so a node cannot redirect it."""

    sender_device: DeviceIdStr
    recipient_device: DeviceIdStr
    payload: ToDevicePayload


# -- key backup ------------------------------------------------------------------------


class BackupEntry(_Wire):
    """One backed-up secret, encrypted to the device list's ``backup_key``
    (vodozemac PkEncryption); its plaintext is a :class:`BackupPlaintext`."""

    ciphertext: Ciphertext
    mac: Ciphertext
    ephemeral_key: Key


class SignedBackupEntry(BackupEntry):
    """A :class:`BackupEntry` as stored: ``signature`` is the account signing key's
    over :func:`backup_entry_signed_bytes` (PkEncryption's MAC does not
    authenticate the ciphertext, and anyone may encrypt to the backup key)."""

    signature: Signature


SIGNING_KEY_ENTRY = "account-signing-key"
"""The backup entry id of the account signing key; Megolm sessions use ``session:<id>``."""


class BackupPlaintext(_Wire):
    signing_key_seed: Key | None = None
    room_key: ExportedRoomKey | None = None
