"""Megolm group sessions: one ciphertext for every device of a conversation.

The sending device encrypts each message once with its outbound session and
gives the session key to each receiving device over Olm; receivers decrypt with
an inbound session made from that key. This module only wraps vodozemac's
``GroupSession`` and ``InboundGroupSession``; ciphertexts and keys are
vodozemac's unpadded base64, and every vodozemac failure surfaces as
:class:`MegolmError`.

Megolm does not reject replays: an inbound session decrypts the same ciphertext
as often as it is given it. Callers remember which (session id, message index)
they have accepted, and for which message, and refuse a second message with an
index they have seen.

An inbound session can be exported from any index it knows onwards; whoever gets
that export can read messages from that index on, never before it.
"""

from __future__ import annotations

import vodozemac

from openmessenger.crypto.olm import check_pickle_key


class MegolmError(Exception):
    """A Megolm ciphertext, key, export or pickle could not be used."""


def message_index(ciphertext: str) -> int:
    """The message index a Megolm ciphertext claims, read without decrypting it
    (and so without any guarantee until it is decrypted)."""
    return _parse(ciphertext).message_index()


class OutboundGroupSession:
    """The sending side: encrypts, and ratchets forward after each message."""

    __slots__ = ("_session",)

    def __init__(self, session: vodozemac.GroupSession) -> None:
        self._session = session

    @classmethod
    def create(cls) -> OutboundGroupSession:
        """A new session with random keys, at message index 0."""
        return cls(vodozemac.GroupSession())

    @property
    def session_id(self) -> str:
        return self._session.session_id

    @property
    def message_index(self) -> int:
        """The index the next message will get."""
        return self._session.message_index

    @property
    def session_key(self) -> str:
        """The key receivers make their inbound session from; it opens messages from
        the current :attr:`message_index` on (signed by the session's Ed25519 key)."""
        return self._session.session_key.to_base64()

    def encrypt(self, plaintext: bytes) -> str:
        """The Megolm ciphertext of ``plaintext``, unpadded base64."""
        return self._session.encrypt(plaintext).to_base64()

    def to_pickle(self, key: bytes) -> str:
        """The session encrypted under ``key`` (32 bytes). Only the restored object may be
        used afterwards: two copies would encrypt different messages at one index."""
        check_pickle_key(key)
        return self._session.pickle(key)

    @classmethod
    def from_pickle(cls, pickle: str, key: bytes) -> OutboundGroupSession:
        check_pickle_key(key)
        try:
            return cls(vodozemac.GroupSession.from_pickle(pickle, key))
        except vodozemac.PickleException as exc:
            raise MegolmError(f"cannot restore the outbound Megolm session: {exc}") from exc

    def __repr__(self) -> str:
        return f"OutboundGroupSession(session_id={self.session_id!r})"


class InboundGroupSession:
    """The receiving side: decrypts messages from :attr:`first_known_index` on."""

    __slots__ = ("_session",)

    def __init__(self, session: vodozemac.InboundGroupSession) -> None:
        self._session = session

    @classmethod
    def from_session_key(cls, session_key: str) -> InboundGroupSession:
        """From the :attr:`OutboundGroupSession.session_key` the sender shared."""
        try:
            return cls(vodozemac.InboundGroupSession(vodozemac.SessionKey(session_key)))
        except (vodozemac.SessionKeyDecodeException, vodozemac.KeyException) as exc:
            raise MegolmError(f"not a Megolm session key: {exc}") from exc

    @classmethod
    def from_exported(cls, exported_key: str) -> InboundGroupSession:
        """From an :meth:`export` (another device of the account, or the key backup)."""
        try:
            key = vodozemac.ExportedSessionKey(exported_key)
            return cls(vodozemac.InboundGroupSession.import_session(key))
        except (vodozemac.SessionKeyDecodeException, vodozemac.KeyException) as exc:
            raise MegolmError(f"not an exported Megolm session key: {exc}") from exc

    @property
    def session_id(self) -> str:
        return self._session.session_id

    @property
    def first_known_index(self) -> int:
        """The lowest message index this session can decrypt."""
        return self._session.first_known_index

    def export(self, index: int | None = None) -> str:
        """The session from ``index`` on (by default from :attr:`first_known_index`), to
        give to another device. :class:`MegolmError` if ``index`` is before the first
        known index (those keys are gone) or negative."""
        at = self.first_known_index if index is None else index
        if at < 0:
            raise MegolmError(f"a message index cannot be negative, got {at}")
        try:
            exported = self._session.export_at(at)
        except OverflowError as exc:
            raise MegolmError(f"message index {at} is out of range") from exc
        if exported is None:
            raise MegolmError(
                f"cannot export from index {at}: this session starts at {self.first_known_index}"
            )
        return exported.to_base64()

    def decrypt(self, ciphertext: str) -> tuple[bytes, int]:
        """The plaintext and message index of ``ciphertext``. :class:`MegolmError` if it
        is damaged, from another session, or before :attr:`first_known_index`.
        A replayed ciphertext decrypts again: see the module docstring."""
        message = _parse(ciphertext)
        try:
            decrypted = self._session.decrypt(message)
        except vodozemac.MegolmDecryptionException as exc:
            raise MegolmError(f"cannot decrypt the Megolm message: {exc}") from exc
        return decrypted.plaintext, decrypted.message_index

    def to_pickle(self, key: bytes) -> str:
        """The session encrypted under ``key`` (32 bytes)."""
        check_pickle_key(key)
        return self._session.pickle(key)

    @classmethod
    def from_pickle(cls, pickle: str, key: bytes) -> InboundGroupSession:
        check_pickle_key(key)
        try:
            return cls(vodozemac.InboundGroupSession.from_pickle(pickle, key))
        except vodozemac.PickleException as exc:
            raise MegolmError(f"cannot restore the inbound Megolm session: {exc}") from exc

    def __repr__(self) -> str:
        return (
            f"InboundGroupSession(session_id={self.session_id!r}, "
            f"first_known_index={self.first_known_index})"
        )


def _parse(ciphertext: str) -> vodozemac.MegolmMessage:
    try:
        return vodozemac.MegolmMessage.from_base64(ciphertext)
    except vodozemac.DecodeException as exc:
        raise MegolmError(f"not a Megolm message: {exc}") from exc
