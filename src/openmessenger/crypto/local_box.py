"""Secrets at rest on a device: sealed under the profile's 32-byte key.

The SDK keeps the account signing key seed, the sealing secret and similar
secrets in its local state; :class:`LocalBox` encrypts each one with NaCl's
SecretBox (XSalsa20-Poly1305, random nonce), so a copy of the state file alone
does not give them away and any change to a sealed value is detected.
"""

from __future__ import annotations

import base64
import binascii

from nacl.exceptions import CryptoError
from nacl.secret import SecretBox

KEY_BYTES = SecretBox.KEY_SIZE


class LocalBoxError(Exception):
    """A sealed value was altered, or sealed under another key."""


class LocalBox:
    """Seal and open values under one key."""

    __slots__ = ("_box",)

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"a local box key must be {KEY_BYTES} bytes, got {len(key)}")
        self._box = SecretBox(key)

    def seal(self, data: bytes) -> str:
        """``data`` encrypted and authenticated (nonce first), unpadded base64."""
        return base64.b64encode(bytes(self._box.encrypt(data))).decode().rstrip("=")

    def open(self, sealed: str) -> bytes:
        """The data :meth:`seal` sealed; :class:`LocalBoxError` if it was altered or
        sealed under another key."""
        try:
            raw = base64.b64decode(sealed + "=" * (-len(sealed) % 4), validate=True)
            return self._box.decrypt(raw)
        except (binascii.Error, ValueError, CryptoError) as exc:
            raise LocalBoxError("the sealed value was altered or sealed under another key") from exc

    def __repr__(self) -> str:
        return "LocalBox(<key hidden>)"
