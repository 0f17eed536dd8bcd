"""The account signing key: one Ed25519 key per account, shared by its devices.

It signs the account's device list, so contacts can check that a device belongs
to the account (and was not added by a node). Every device of the account holds
its seed (sent to a newly linked device inside Olm, and kept in the key backup).
Ed25519 is PyNaCl's; nothing here is a primitive of our own.
"""

from __future__ import annotations

import base64

from nacl.signing import SigningKey

from openmessenger.crypto.keys import decode_base64_key, verify_ed25519
from openmessenger.protocol.e2e import DeviceList, SignedDeviceList

SEED_BYTES = 32


class AccountSigningKey:
    """An Ed25519 signing key; ``seed`` is its secret, ``public_key`` what others check."""

    __slots__ = ("_key",)

    def __init__(self, key: SigningKey) -> None:
        self._key = key

    @classmethod
    def generate(cls) -> AccountSigningKey:
        return cls(SigningKey.generate())

    @classmethod
    def from_seed(cls, seed: str) -> AccountSigningKey:
        """From a seed as :attr:`seed` gives it (32 bytes, base64); ValueError otherwise."""
        raw = decode_base64_key(seed, SEED_BYTES)
        if raw is None:
            raise ValueError(f"a signing key seed is {SEED_BYTES} bytes in base64")
        return cls(SigningKey(raw))

    @property
    def seed(self) -> str:
        """The secret seed, unpadded base64. Keep it like a password."""
        return _encode(bytes(self._key))

    @property
    def public_key(self) -> str:
        """The public key, unpadded base64."""
        return _encode(bytes(self._key.verify_key))

    def sign(self, data: bytes) -> str:
        """An Ed25519 signature over ``data``, unpadded base64."""
        return _encode(self._key.sign(data).signature)

    def __repr__(self) -> str:
        # Never show the seed.
        return f"AccountSigningKey(public_key={self.public_key!r})"


def verify_signature(public_key: str, data: bytes, signature: str) -> bool:
    """Whether ``signature`` is ``public_key``'s over ``data`` (False for malformed input)."""
    return verify_ed25519(public_key, data, signature)


def sign_device_list(key: AccountSigningKey, device_list: DeviceList) -> SignedDeviceList:
    """Sign ``device_list``; ValueError if the list names another signing key."""
    if device_list.signing_key != key.public_key:
        raise ValueError("the device list names another account signing key")
    return SignedDeviceList(list=device_list, signature=key.sign(device_list.signed_bytes()))


def verify_device_list(signed: SignedDeviceList) -> bool:
    """Whether the list is signed by the signing key it names.

    This proves the list is whole and as that key made it; whether that key is the
    account's real one is the caller's question (the key it knew before, or the
    safety number)."""
    return verify_signature(signed.list.signing_key, signed.list.signed_bytes(), signed.signature)


def _encode(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")
