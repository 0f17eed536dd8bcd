"""A device's long-term identity: its vodozemac Olm account.

The account holds the device's Ed25519 signing key and Curve25519 identity key.
This module only wraps vodozemac (no primitives are written here); the private
keys never leave the account object except inside a pickle encrypted under a
32-byte pickle key.
"""

from __future__ import annotations

import vodozemac

PICKLE_KEY_BYTES = 32
"""vodozemac refuses pickle keys of any other length."""


class IdentityError(Exception):
    """A pickle could not be restored (wrong key, damaged or not a pickle)."""


class DeviceIdentity:
    """The device's Olm account, seen as an identity: public keys and signing."""

    __slots__ = ("_account",)

    def __init__(self, account: vodozemac.Account) -> None:
        self._account = account

    @classmethod
    def create(cls) -> DeviceIdentity:
        """A fresh identity with new random keys."""
        return cls(vodozemac.Account())

    @classmethod
    def from_pickle(cls, pickle: str, key: bytes) -> DeviceIdentity:
        """Restore an identity saved by :meth:`to_pickle`.

        Two live copies of one account diverge once they create sessions, so the
        object that was pickled must not be used again after this.
        """
        _check_pickle_key(key)
        try:
            return cls(vodozemac.Account.from_pickle(pickle, key))
        except vodozemac.PickleException as exc:
            raise IdentityError(f"cannot restore the device identity: {exc}") from exc

    def to_pickle(self, key: bytes) -> str:
        """The account encrypted under ``key`` (32 bytes), as vodozemac's pickle string."""
        _check_pickle_key(key)
        return self._account.pickle(key)

    @property
    def ed25519_key(self) -> str:
        """The public signing key, unpadded base64."""
        return self._account.ed25519_key.to_base64()

    @property
    def curve25519_key(self) -> str:
        """The public Curve25519 identity key, unpadded base64."""
        return self._account.curve25519_key.to_base64()

    def sign(self, data: bytes) -> str:
        """An Ed25519 signature over ``data``, unpadded base64."""
        return self._account.sign(data).to_base64()

    def __repr__(self) -> str:
        # Never show more than the public key.
        return f"DeviceIdentity(ed25519_key={self.ed25519_key!r})"


def _check_pickle_key(key: bytes) -> None:
    if len(key) != PICKLE_KEY_BYTES:
        raise ValueError(f"a pickle key must be {PICKLE_KEY_BYTES} bytes, got {len(key)}")
