"""Megolm: one ciphertext for every receiving device, exports from an index on."""

from __future__ import annotations

import base64

import pytest

from openmessenger.crypto.megolm import (
    InboundGroupSession,
    MegolmError,
    OutboundGroupSession,
    message_index,
)

PICKLE_KEY = b"m" * 32


def sessions() -> tuple[OutboundGroupSession, InboundGroupSession]:
    outbound = OutboundGroupSession.create()
    return outbound, InboundGroupSession.from_session_key(outbound.session_key)


def tamper(ciphertext: str, at: int) -> str:
    raw = bytearray(base64.b64decode(ciphertext + "=" * (-len(ciphertext) % 4)))
    raw[at] ^= 0x01
    return base64.b64encode(raw).decode().rstrip("=")


def test_receivers_decrypt_what_the_sender_encrypts() -> None:
    outbound, inbound = sessions()

    first, second = outbound.encrypt(b"first"), outbound.encrypt(b"second")

    assert inbound.session_id == outbound.session_id
    assert "=" not in first
    assert inbound.decrypt(first) == (b"first", 0)
    assert inbound.decrypt(second) == (b"second", 1)
    assert outbound.message_index == 2


def test_a_session_key_shared_later_opens_only_later_messages() -> None:
    outbound = OutboundGroupSession.create()
    early = outbound.encrypt(b"before you joined")

    inbound = InboundGroupSession.from_session_key(outbound.session_key)

    assert inbound.first_known_index == 1
    assert inbound.decrypt(outbound.encrypt(b"after"))[0] == b"after"
    with pytest.raises(MegolmError):
        inbound.decrypt(early)


def test_message_index_is_read_without_the_key() -> None:
    outbound = OutboundGroupSession.create()
    ciphertexts = [outbound.encrypt(b"x") for _ in range(3)]

    assert [message_index(c) for c in ciphertexts] == [0, 1, 2]
    with pytest.raises(MegolmError):
        message_index("not a megolm message")


def test_an_export_at_an_index_decrypts_from_there_on() -> None:
    outbound, inbound = sessions()
    ciphertexts = [outbound.encrypt(f"message {i}".encode()) for i in range(4)]

    exported = InboundGroupSession.from_exported(inbound.export(2))

    assert exported.session_id == outbound.session_id
    assert exported.first_known_index == 2
    assert exported.decrypt(ciphertexts[2]) == (b"message 2", 2)
    assert exported.decrypt(ciphertexts[3]) == (b"message 3", 3)
    for earlier in ciphertexts[:2]:
        with pytest.raises(MegolmError, match="unknown message index"):
            exported.decrypt(earlier)


def test_an_export_defaults_to_the_first_known_index() -> None:
    outbound, inbound = sessions()
    first = outbound.encrypt(b"first")

    again = InboundGroupSession.from_exported(inbound.export())

    assert again.first_known_index == 0
    assert again.decrypt(first) == (b"first", 0)


def test_an_export_before_the_first_known_index_is_refused() -> None:
    outbound, inbound = sessions()
    outbound.encrypt(b"0")
    later = InboundGroupSession.from_exported(inbound.export(1))

    with pytest.raises(MegolmError, match="starts at 1"):
        later.export(0)
    with pytest.raises(MegolmError):
        later.export(-1)


def test_a_tampered_ciphertext_fails_with_megolm_error() -> None:
    outbound, inbound = sessions()
    ciphertext = outbound.encrypt(b"do not change me")

    for at in (10, -1):
        with pytest.raises(MegolmError):
            inbound.decrypt(tamper(ciphertext, at))
    with pytest.raises(MegolmError):
        inbound.decrypt("garbage!")


def test_a_ciphertext_of_another_session_fails() -> None:
    _, inbound = sessions()

    with pytest.raises(MegolmError):
        inbound.decrypt(OutboundGroupSession.create().encrypt(b"other"))


def test_a_replay_decrypts_again_so_callers_must_track_indices() -> None:
    outbound, inbound = sessions()
    ciphertext = outbound.encrypt(b"once")

    assert inbound.decrypt(ciphertext) == inbound.decrypt(ciphertext)


def test_bad_session_keys_are_refused_with_megolm_error() -> None:
    outbound, inbound = sessions()

    with pytest.raises(MegolmError):
        InboundGroupSession.from_session_key("not a key")
    with pytest.raises(MegolmError):
        InboundGroupSession.from_exported("not a key")
    # A session key and an export are not interchangeable.
    with pytest.raises(MegolmError):
        InboundGroupSession.from_session_key(inbound.export())
    with pytest.raises(MegolmError):
        InboundGroupSession.from_exported(outbound.session_key)


def test_pickled_sessions_continue_where_they_were() -> None:
    outbound, inbound = sessions()
    assert inbound.decrypt(outbound.encrypt(b"before")) == (b"before", 0)
    pickles = outbound.to_pickle(PICKLE_KEY), inbound.to_pickle(PICKLE_KEY)
    del outbound, inbound

    restored_out = OutboundGroupSession.from_pickle(pickles[0], PICKLE_KEY)
    restored_in = InboundGroupSession.from_pickle(pickles[1], PICKLE_KEY)

    assert restored_out.message_index == 1
    assert restored_in.decrypt(restored_out.encrypt(b"after")) == (b"after", 1)


def test_pickles_need_their_key() -> None:
    outbound, inbound = sessions()

    with pytest.raises(MegolmError):
        OutboundGroupSession.from_pickle(outbound.to_pickle(PICKLE_KEY), b"n" * 32)
    with pytest.raises(MegolmError):
        InboundGroupSession.from_pickle(inbound.to_pickle(PICKLE_KEY), b"n" * 32)
    with pytest.raises(ValueError, match="32 bytes"):
        inbound.to_pickle(b"short")
