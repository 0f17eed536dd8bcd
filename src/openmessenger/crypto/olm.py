"""Olm sessions: the pairwise, device-to-device channel (vodozemac's Double Ratchet).

Olm carries what one device must tell exactly one other: Megolm session keys
(:class:`~openmessenger.protocol.e2e.KeyShare`) and to-device payloads. This
module only wraps ``vodozemac.Session``; the ratchet is vodozemac's. Messages
travel as :class:`~openmessenger.protocol.e2e.OlmCiphertext` (type and unpadded
base64 body), and every vodozemac failure surfaces as :class:`OlmError`.

A session is state that moves forward with every message. Once it has been
pickled and restored, only the restored object may be used: the old twin would
reuse message keys the other side has already seen.
"""

from __future__ import annotations

import base64
import binascii
from typing import Literal

import vodozemac
from pydantic import ValidationError

from openmessenger.protocol.e2e import OlmCiphertext

PICKLE_KEY_BYTES = 32
"""vodozemac refuses pickle keys of any other length."""


class OlmError(Exception):
    """An Olm message or session could not be used (damaged, not ours, replayed, wrong key)."""


def check_pickle_key(key: bytes) -> None:
    """Refuse a pickle key of the wrong length with a ValueError (a caller's bug,
    not a damaged pickle)."""
    if len(key) != PICKLE_KEY_BYTES:
        raise ValueError(f"a pickle key must be {PICKLE_KEY_BYTES} bytes, got {len(key)}")


class OlmSession:
    """One Olm session with one other device."""

    __slots__ = ("_session",)

    def __init__(self, session: vodozemac.Session) -> None:
        self._session = session

    @property
    def session_id(self) -> str:
        """The id both ends compute for this session."""
        return self._session.session_id

    def encrypt(self, plaintext: bytes) -> OlmCiphertext:
        """Encrypt for the other device. Until it has answered, every message is a
        pre-key message (type 0), so it can open the session on its side."""
        message_type, body = self._session.encrypt(plaintext).to_parts()
        kind: Literal[0, 1] = 0 if message_type == 0 else 1
        try:
            return OlmCiphertext(type=kind, body=_encode(body))
        except ValidationError as exc:
            raise OlmError("the plaintext is too long for one Olm message") from exc

    def decrypt(self, message: OlmCiphertext) -> bytes:
        """Decrypt a message from the other device; :class:`OlmError` if it is damaged,
        from another session or already decrypted (Olm refuses replays)."""
        any_message = _to_vodozemac(message)
        try:
            return self._session.decrypt(any_message)
        except vodozemac.OlmDecryptionException as exc:
            raise OlmError(f"cannot decrypt the Olm message: {exc}") from exc

    def matches(self, message: OlmCiphertext) -> bool:
        """True only for a pre-key message that was sent in this session: a receiver
        uses it to tell a repeated pre-key message from one opening a new session."""
        if message.type != 0:
            return False
        try:
            pre_key = _to_vodozemac(message).to_pre_key()
        except OlmError:
            return False
        return pre_key is not None and self._session.session_matches(pre_key)

    def to_pickle(self, key: bytes) -> str:
        """The session encrypted under ``key`` (32 bytes), as vodozemac's pickle string."""
        check_pickle_key(key)
        return self._session.pickle(key)

    @classmethod
    def from_pickle(cls, pickle: str, key: bytes) -> OlmSession:
        """Restore a session saved by :meth:`to_pickle`; the pickled object must not
        be used again afterwards."""
        check_pickle_key(key)
        try:
            return cls(vodozemac.Session.from_pickle(pickle, key))
        except vodozemac.PickleException as exc:
            raise OlmError(f"cannot restore the Olm session: {exc}") from exc

    def __repr__(self) -> str:
        return f"OlmSession(session_id={self.session_id!r})"


def pre_key_message(message: OlmCiphertext) -> vodozemac.PreKeyMessage:
    """The vodozemac pre-key message in ``message``; :class:`OlmError` if it is not one."""
    if message.type != 0:
        raise OlmError("not a pre-key message: only a pre-key message opens a session")
    pre_key = _to_vodozemac(message).to_pre_key()
    if pre_key is None:
        raise OlmError("not a pre-key message: only a pre-key message opens a session")
    return pre_key


def _to_vodozemac(message: OlmCiphertext) -> vodozemac.AnyOlmMessage:
    try:
        return vodozemac.AnyOlmMessage.from_parts(message.type, _decode(message.body))
    except vodozemac.DecodeException as exc:
        raise OlmError(f"not an Olm message: {exc}") from exc


def _encode(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def _decode(text: str) -> bytes:
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise OlmError("not an Olm message: the body is not base64") from exc
