"""A device's long-term identity: its vodozemac Olm account.

The account holds the device's Ed25519 signing key and Curve25519 identity key,
and the one-time and fallback keys other devices use to open Olm sessions with
it. This module only wraps vodozemac (no primitives are written here); the
private keys never leave the account object except inside a pickle encrypted
under a 32-byte pickle key.

Opening a session changes the account (an inbound session consumes its one-time
key), so the account must be pickled again after each one.
"""

from __future__ import annotations

import vodozemac

from openmessenger.crypto.olm import PICKLE_KEY_BYTES as PICKLE_KEY_BYTES
from openmessenger.crypto.olm import OlmError, OlmSession, check_pickle_key, pre_key_message
from openmessenger.protocol.e2e import OlmCiphertext


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
        check_pickle_key(key)
        try:
            return cls(vodozemac.Account.from_pickle(pickle, key))
        except vodozemac.PickleException as exc:
            raise IdentityError(f"cannot restore the device identity: {exc}") from exc

    def to_pickle(self, key: bytes) -> str:
        """The account encrypted under ``key`` (32 bytes), as vodozemac's pickle string."""
        check_pickle_key(key)
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

    # -- keys other devices open sessions with ---------------------------------------

    @property
    def max_one_time_keys(self) -> int:
        """How many one-time keys the node should hold for this device at most."""
        return self._account.max_number_of_one_time_keys

    def generate_one_time_keys(self, count: int) -> None:
        """Make ``count`` new one-time keys (0 to :attr:`max_one_time_keys`); they stay
        unpublished until :meth:`mark_keys_as_published`."""
        if not 0 <= count <= self.max_one_time_keys:
            raise ValueError(f"count must be between 0 and {self.max_one_time_keys}, got {count}")
        self._account.generate_one_time_keys(count)

    def unpublished_one_time_keys(self) -> dict[str, str]:
        """key id -> public one-time key (unpadded base64), for keys not yet published.

        Key ids count up separately from fallback key ids: the same id can name a
        one-time key and a fallback key."""
        return {key_id: key.to_base64() for key_id, key in self._account.one_time_keys.items()}

    def generate_fallback_key(self) -> None:
        """Make a new fallback key, used when the node has no one-time key left.
        The one it replaces still opens sessions (for messages already on their
        way) until the next one is made."""
        # vodozemac 0.10 has it; its type stub does not list it.
        self._account.generate_fallback_key()  # type: ignore[attr-defined]

    def unpublished_fallback_key(self) -> tuple[str, str] | None:
        """(key id, public key) of the fallback key if it is not yet published."""
        # vodozemac 0.10 has it (only the unpublished key); its type stub does not list it.
        keys: dict[str, vodozemac.Curve25519PublicKey] = self._account.fallback_key  # type: ignore[attr-defined]
        for key_id, key in keys.items():
            return key_id, key.to_base64()
        return None

    def mark_keys_as_published(self) -> None:
        """The node now holds the unpublished keys: stop listing them."""
        self._account.mark_keys_as_published()

    # -- Olm sessions ------------------------------------------------------------------

    def create_outbound_session(self, identity_key: str, one_time_key: str) -> OlmSession:
        """A session to another device, from its Curve25519 identity key and one of its
        one-time (or fallback) keys, as claimed from its node. The caller checks the
        one-time key's signature first. :class:`OlmError` if a key is not a key."""
        try:
            their_identity = vodozemac.Curve25519PublicKey.from_base64(identity_key)
            their_one_time = vodozemac.Curve25519PublicKey.from_base64(one_time_key)
        except vodozemac.KeyException as exc:
            raise OlmError(f"not a Curve25519 public key: {exc}") from exc
        return OlmSession(self._account.create_outbound_session(their_identity, their_one_time))

    def create_inbound_session(
        self, sender_key: str, message: OlmCiphertext
    ) -> tuple[OlmSession, bytes]:
        """Open the session another device started, with its pre-key message; returns
        the session and the message's plaintext.

        The one-time key the message used is consumed (a second session from it is
        refused). :class:`OlmError` if ``message`` is not a pre-key message, is
        damaged, or uses a key this account does not have (any more)."""
        pre_key = pre_key_message(message)
        try:
            their_identity = vodozemac.Curve25519PublicKey.from_base64(sender_key)
        except vodozemac.KeyException as exc:
            raise OlmError(f"not a Curve25519 public key: {exc}") from exc
        try:
            session, plaintext = self._account.create_inbound_session(their_identity, pre_key)
        except vodozemac.SessionCreationException as exc:
            raise OlmError(f"cannot open the Olm session: {exc}") from exc
        return OlmSession(session), plaintext

    def __repr__(self) -> str:
        # Never show more than the public key.
        return f"DeviceIdentity(ed25519_key={self.ed25519_key!r})"
