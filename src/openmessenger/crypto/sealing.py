"""Sealing: how the node stores plaintext it had to see, readable only by devices.

An Openmsg v1 peer (or a client sending plain text) hands the node plaintext. The
node seals it before storing: a fresh random key encrypts the text (NaCl
SecretBox, which authenticates it), and that key is encrypted to each receiving
device's sealing key (vodozemac PkEncryption). Afterwards a copy of the database
alone does not show the text. This is transport encryption, not end to end: the
node saw the text, and anyone who knows the devices' public sealing keys can
seal a body to them, so a sealed body says nothing about who wrote it.

Sealing to no device at all is allowed and gives a body nobody can open (a
conversation whose devices have not published sealing keys yet).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping

import nacl.utils
import vodozemac
from nacl.exceptions import CryptoError
from nacl.secret import SecretBox
from pydantic import ValidationError

from openmessenger.crypto.keys import decode_base64_key
from openmessenger.protocol.e2e import SealedBody, SealedKey

KEY_BYTES = 32
_MAC_BYTES = 8


class SealingError(Exception):
    """A body could not be sealed or opened (no key for this device, damaged, bad key)."""


class SealingKeyPair:
    """A device's sealing key: the node seals to ``public_key``, the device opens."""

    __slots__ = ("_decryption", "_secret")

    def __init__(self, secret: vodozemac.Curve25519SecretKey) -> None:
        self._secret = secret
        self._decryption = vodozemac.PkDecryption.from_key(secret)

    @classmethod
    def generate(cls) -> SealingKeyPair:
        return cls(vodozemac.Curve25519SecretKey())

    @classmethod
    def from_secret(cls, secret: str) -> SealingKeyPair:
        """From :attr:`secret` (32 bytes, base64); ValueError if it is not one."""
        raw = decode_base64_key(secret, KEY_BYTES)
        if raw is None:
            raise ValueError(f"a sealing secret is {KEY_BYTES} bytes in base64")
        return cls(vodozemac.Curve25519SecretKey.from_bytes(raw))

    @property
    def secret(self) -> str:
        """The secret key, unpadded base64. Keep it like a password."""
        return _encode(self._secret.to_bytes())

    @property
    def public_key(self) -> str:
        """The public key the device publishes (signed) for the node to seal to."""
        return self._decryption.public_key.to_base64()

    def open(self, body: SealedBody, device_id: str) -> str:
        """The text of ``body``, with the key sealed to ``device_id`` (this device).
        :class:`SealingError` if the body has no key for it, the key is not this
        device's, or anything was altered."""
        sealed_key = body.keys.get(device_id)
        if sealed_key is None:
            raise SealingError(f"the body is not sealed to device {device_id!r}")
        key = self._open_key(sealed_key)
        boxed = _decode(body.ciphertext)
        if boxed is None:
            raise SealingError("the sealed body is damaged")
        try:
            return SecretBox(key).decrypt(boxed).decode()
        except (CryptoError, UnicodeDecodeError) as exc:
            raise SealingError("the sealed body is damaged") from exc

    def _open_key(self, sealed: SealedKey) -> bytes:
        ciphertext = _decode(sealed.ciphertext)
        mac = decode_base64_key(sealed.mac, _MAC_BYTES)
        ephemeral_key = decode_base64_key(sealed.ephemeral_key, KEY_BYTES)
        if ciphertext is None or mac is None or ephemeral_key is None:
            raise SealingError("the sealed key is damaged")
        message = vodozemac.Message(ciphertext, mac, ephemeral_key)
        try:
            key = self._decryption.decrypt(message)
        except (vodozemac.PkDecodeException, vodozemac.KeyException) as exc:
            raise SealingError("the sealed key is not for this device, or damaged") from exc
        if len(key) != KEY_BYTES:
            raise SealingError("the sealed key is damaged")
        return key

    def __repr__(self) -> str:
        # Never show the secret.
        return f"SealingKeyPair(public_key={self.public_key!r})"


def seal(text: str, recipients: Mapping[str, str]) -> SealedBody:
    """Seal ``text`` to each device in ``recipients`` (device id -> sealing public key).

    An empty mapping gives a body nobody can open. :class:`SealingError` if a public
    key is not a key, or the body would exceed the wire limits."""
    key = nacl.utils.random(KEY_BYTES)
    boxed = bytes(SecretBox(key).encrypt(text.encode()))  # nonce || ciphertext
    keys = {
        device_id: _seal_key(key, device_id, public) for device_id, public in recipients.items()
    }
    try:
        return SealedBody(ciphertext=_encode(boxed), keys=keys)
    except ValidationError as exc:
        raise SealingError("the text is too long, or there are too many devices") from exc


def _seal_key(key: bytes, device_id: str, public_key: str) -> SealedKey:
    try:
        public = vodozemac.Curve25519PublicKey.from_base64(public_key)
    except vodozemac.KeyException as exc:
        raise SealingError(f"the sealing key of device {device_id!r} is not a key") from exc
    # The attributes, not Message.to_base64(): vodozemac 0.10 returns that tuple in
    # the reverse of the (ciphertext, mac, ephemeral_key) order it documents.
    message = vodozemac.PkEncryption.from_key(public).encrypt(key)
    return SealedKey(
        ciphertext=_encode(message.ciphertext),
        mac=_encode(message.mac),
        ephemeral_key=_encode(message.ephemeral_key),
    )


def _encode(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def _decode(text: str) -> bytes | None:
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None
