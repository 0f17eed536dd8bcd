"""The recovery key: what a user writes down to get an account back without a device.

It is 32 random bytes. Two keys follow from it with HKDF-SHA256, so the user only
ever keeps one thing:

- the backup key (Curve25519): devices encrypt the account signing key and
  Megolm sessions to its public half (:func:`encrypt_for_backup`, vodozemac
  PkEncryption), which the device list publishes; only the recovery key opens them;
- the recovery auth key (Ed25519): the node stores its public half and asks for a
  signature with it before it lets a new device into the account by recovery.

The display form is base32 of ``b"OM"`` + the key + a parity byte (XOR of the bytes
before it), in groups of four: the prefix tells it apart from other secrets and
the parity byte catches any single mistyped character.

A backup entry proves nothing about who wrote it: anyone who knows the (public)
backup key can encrypt to it, and vodozemac's PkEncryption, kept compatible with
libolm, does not authenticate its ciphertext. So callers check what they restore
against what they already trust, for example that a restored signing key seed
gives the signing key of the account's device list.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from functools import reduce
from operator import xor

import vodozemac
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from nacl.signing import SigningKey
from pydantic import ValidationError

from openmessenger.crypto.account_keys import AccountSigningKey
from openmessenger.crypto.keys import decode_base64_key
from openmessenger.protocol.e2e import BackupEntry

KEY_BYTES = 32
PREFIX = b"OM"
DISPLAY_CHARS = 56
"""base32 of 2 + 32 + 1 = 35 bytes: 280 bits, 56 characters and no padding."""
_MAC_BYTES = 8
"""vodozemac's PkEncryption MAC is truncated to 8 bytes, as libolm's."""

_BACKUP_INFO = b"openmessenger/v1/backup-key"
_AUTH_INFO = b"openmessenger/v1/recovery-auth"


class InvalidRecoveryKey(ValueError):
    """What the user typed is not a recovery key; the message says what is wrong."""


class BackupDecryptionError(ValueError):
    """A backup entry could not be decrypted (another recovery key, or damaged)."""


class RecoveryKey:
    """The recovery key and what follows from it."""

    __slots__ = ("_auth_key", "_backup", "_key")

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"a recovery key is {KEY_BYTES} bytes, got {len(key)}")
        self._key = key
        backup_secret = vodozemac.Curve25519SecretKey.from_bytes(_derive(key, _BACKUP_INFO))
        self._backup = vodozemac.PkDecryption.from_key(backup_secret)
        self._auth_key = AccountSigningKey(SigningKey(_derive(key, _AUTH_INFO)))

    @classmethod
    def generate(cls) -> RecoveryKey:
        return cls(secrets.token_bytes(KEY_BYTES))

    @classmethod
    def parse(cls, text: str) -> RecoveryKey:
        """The key a user typed: spaces and case do not matter. :class:`InvalidRecoveryKey`
        with a message for the user if it is not a recovery key or has a typo."""
        compact = "".join(text.split()).upper()
        if len(compact) != DISPLAY_CHARS:
            raise InvalidRecoveryKey(
                f"a recovery key has {DISPLAY_CHARS} letters and digits, "
                f"this has {len(compact)}: check for a missing or extra group"
            )
        try:
            raw = base64.b32decode(compact)
        except (binascii.Error, ValueError) as exc:
            raise InvalidRecoveryKey(
                "a recovery key only has the letters A to Z and the digits 2 to 7: "
                "check for a mistyped character (0 is the letter O, 1 the letter I or L)"
            ) from exc
        if not raw.startswith(PREFIX):
            raise InvalidRecoveryKey(
                "this is not an OpenMessenger recovery key: check the first group"
            )
        if reduce(xor, raw[:-1], 0) != raw[-1]:
            raise InvalidRecoveryKey(
                "this recovery key has a typo: check each group against what you wrote down"
            )
        return cls(raw[len(PREFIX) : -1])

    def __str__(self) -> str:
        """The display form: 14 groups of 4 characters."""
        data = PREFIX + self._key
        text = base64.b32encode(data + bytes([reduce(xor, data, 0)])).decode()
        return " ".join(text[i : i + 4] for i in range(0, len(text), 4))

    def __repr__(self) -> str:
        # Never show the key, not even part of it.
        return f"RecoveryKey(backup_public_key={self.backup_public_key!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RecoveryKey):
            return NotImplemented
        return secrets.compare_digest(self._key, other._key)

    def __hash__(self) -> int:
        return hash(self.backup_public_key)

    @property
    def backup_public_key(self) -> str:
        """The public key backups are encrypted to (the device list's ``backup_key``)."""
        return self._backup.public_key.to_base64()

    @property
    def auth_key(self) -> AccountSigningKey:
        """The Ed25519 key that proves to the node that the user has the recovery key."""
        return self._auth_key

    def decrypt_backup(self, entry: BackupEntry) -> bytes:
        """The plaintext of a backup entry; :class:`BackupDecryptionError` if it was made
        for another recovery key or is damaged. See the module docstring: a plaintext
        that comes out is not proof of who wrote it."""
        parts = (
            _decode(entry.ciphertext),
            decode_base64_key(entry.mac, _MAC_BYTES),
            decode_base64_key(entry.ephemeral_key, KEY_BYTES),
        )
        ciphertext, mac, ephemeral_key = parts
        if ciphertext is None or mac is None or ephemeral_key is None:
            raise BackupDecryptionError("the backup entry is damaged")
        try:
            return self._backup.decrypt(vodozemac.Message(ciphertext, mac, ephemeral_key))
        except (vodozemac.PkDecodeException, vodozemac.KeyException) as exc:
            raise BackupDecryptionError(
                "the backup entry cannot be decrypted with this recovery key"
            ) from exc


def encrypt_for_backup(backup_public_key: str, plaintext: bytes) -> BackupEntry:
    """Encrypt ``plaintext`` (a serialized ``BackupPlaintext``) to the backup key.
    ValueError if ``backup_public_key`` is not a key or the plaintext is too long."""
    try:
        public_key = vodozemac.Curve25519PublicKey.from_base64(backup_public_key)
    except vodozemac.KeyException as exc:
        raise ValueError(f"not a Curve25519 public key: {exc}") from exc
    message = vodozemac.PkEncryption.from_key(public_key).encrypt(plaintext)
    # The attributes, not Message.to_base64(): vodozemac 0.10 returns that tuple in
    # the reverse of the (ciphertext, mac, ephemeral_key) order it documents.
    try:
        return BackupEntry(
            ciphertext=_encode(message.ciphertext),
            mac=_encode(message.mac),
            ephemeral_key=_encode(message.ephemeral_key),
        )
    except ValidationError as exc:
        raise ValueError("the plaintext is too long for a backup entry") from exc


def _derive(key: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=info).derive(key)


def _encode(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def _decode(text: str) -> bytes | None:
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None
