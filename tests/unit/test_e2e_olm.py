"""Olm between two devices: one-time keys, pre-key messages, sessions that survive a pickle."""

from __future__ import annotations

import base64

import pytest

from openmessenger.crypto.device_identity import DeviceIdentity
from openmessenger.crypto.olm import OlmError, OlmSession
from openmessenger.protocol.e2e import OlmCiphertext

PICKLE_KEY = b"p" * 32


def claim_one_time_key(identity: DeviceIdentity) -> str:
    """What the node does for a sender: hand out one published one-time key."""
    identity.generate_one_time_keys(1)
    (key,) = identity.unpublished_one_time_keys().values()
    identity.mark_keys_as_published()
    return key


def open_channel(
    alice: DeviceIdentity, bob: DeviceIdentity
) -> tuple[OlmSession, OlmSession, OlmCiphertext]:
    """Alice opens a session to Bob; Bob opens his side from her first (pre-key) message."""
    outbound = alice.create_outbound_session(bob.curve25519_key, claim_one_time_key(bob))
    first = outbound.encrypt(b"hello bob")
    inbound, plaintext = bob.create_inbound_session(alice.curve25519_key, first)
    assert plaintext == b"hello bob"
    return outbound, inbound, first


def flip(body: str, at: int) -> str:
    replacement = "A" if body[at] != "A" else "B"
    return body[:at] + replacement + body[at + 1 :]


def test_one_time_keys_are_listed_until_published() -> None:
    identity = DeviceIdentity.create()

    identity.generate_one_time_keys(3)
    keys = identity.unpublished_one_time_keys()

    assert len(keys) == 3
    assert all(len(key) == 43 and "=" not in key for key in keys.values())
    identity.mark_keys_as_published()
    assert identity.unpublished_one_time_keys() == {}


@pytest.mark.parametrize("count", [-1, 10_000])
def test_one_time_key_count_out_of_range_is_refused(count: int) -> None:
    identity = DeviceIdentity.create()

    with pytest.raises(ValueError, match="between 0 and"):
        identity.generate_one_time_keys(count)


def test_fallback_key_is_listed_until_published() -> None:
    identity = DeviceIdentity.create()
    assert identity.unpublished_fallback_key() is None

    identity.generate_fallback_key()
    fallback = identity.unpublished_fallback_key()

    assert fallback is not None
    assert len(fallback[1]) == 43
    identity.mark_keys_as_published()
    assert identity.unpublished_fallback_key() is None
    assert identity.max_one_time_keys > 0


def test_messages_flow_both_ways_after_the_pre_key_message() -> None:
    alice, bob = DeviceIdentity.create(), DeviceIdentity.create()
    to_bob, to_alice, first = open_channel(alice, bob)

    assert first.type == 0
    assert to_bob.session_id == to_alice.session_id
    reply = to_alice.encrypt(b"hello alice")
    assert reply.type == 1
    assert to_bob.decrypt(reply) == b"hello alice"
    # Once Bob has answered, Alice's messages are normal ones too.
    second = to_bob.encrypt(b"how are you")
    assert second.type == 1
    assert to_alice.decrypt(second) == b"how are you"


def test_a_one_time_key_opens_one_session_only() -> None:
    alice, bob = DeviceIdentity.create(), DeviceIdentity.create()
    _, _, first = open_channel(alice, bob)

    with pytest.raises(OlmError, match="cannot open"):
        bob.create_inbound_session(alice.curve25519_key, first)


def test_the_fallback_key_opens_sessions_when_one_time_keys_run_out() -> None:
    alice, carol, bob = DeviceIdentity.create(), DeviceIdentity.create(), DeviceIdentity.create()
    bob.generate_fallback_key()
    fallback = bob.unpublished_fallback_key()
    assert fallback is not None

    for sender in (alice, carol):
        session = sender.create_outbound_session(bob.curve25519_key, fallback[1])
        _, plaintext = bob.create_inbound_session(sender.curve25519_key, session.encrypt(b"hi"))
        assert plaintext == b"hi"


def test_a_normal_message_cannot_open_a_session() -> None:
    alice, bob = DeviceIdentity.create(), DeviceIdentity.create()
    _, to_alice, _ = open_channel(alice, bob)
    normal = to_alice.encrypt(b"reply")

    with pytest.raises(OlmError, match="pre-key"):
        alice.create_inbound_session(bob.curve25519_key, normal)


def test_a_damaged_pre_key_message_is_refused_with_olm_error() -> None:
    bob = DeviceIdentity.create()

    with pytest.raises(OlmError):
        bob.create_inbound_session(
            DeviceIdentity.create().curve25519_key, OlmCiphertext(type=0, body="AAAA")
        )


@pytest.mark.parametrize("at", [0, 5, 40, 80, -20, -1])
def test_a_tampered_pre_key_message_opens_no_session(at: int) -> None:
    alice, bob = DeviceIdentity.create(), DeviceIdentity.create()
    first = alice.create_outbound_session(bob.curve25519_key, claim_one_time_key(bob)).encrypt(
        b"hello bob"
    )
    raw = bytearray(base64.b64decode(first.body + "=" * (-len(first.body) % 4)))
    raw[at] ^= 0x01
    tampered = OlmCiphertext(type=0, body=base64.b64encode(raw).decode().rstrip("="))

    with pytest.raises(OlmError):
        bob.create_inbound_session(alice.curve25519_key, tampered)


def test_bad_keys_are_refused_with_olm_error() -> None:
    alice, bob = DeviceIdentity.create(), DeviceIdentity.create()

    with pytest.raises(OlmError):
        alice.create_outbound_session("not a key", claim_one_time_key(bob))
    with pytest.raises(OlmError):
        bob.create_inbound_session("not a key", OlmCiphertext(type=0, body="AAAA"))


def test_a_tampered_message_does_not_decrypt() -> None:
    alice, bob = DeviceIdentity.create(), DeviceIdentity.create()
    to_bob, to_alice, _ = open_channel(alice, bob)
    reply = to_alice.encrypt(b"secret")

    tampered = OlmCiphertext(type=reply.type, body=flip(reply.body, len(reply.body) // 2))

    with pytest.raises(OlmError):
        to_bob.decrypt(tampered)
    assert to_bob.decrypt(reply) == b"secret"


def test_a_message_from_another_session_does_not_decrypt() -> None:
    alice, bob = DeviceIdentity.create(), DeviceIdentity.create()
    _, to_alice, _ = open_channel(alice, bob)
    other_to_bob, _, _ = open_channel(DeviceIdentity.create(), bob)

    with pytest.raises(OlmError):
        other_to_bob.decrypt(to_alice.encrypt(b"not for you"))


def test_a_message_decrypts_once() -> None:
    alice, bob = DeviceIdentity.create(), DeviceIdentity.create()
    to_bob, to_alice, _ = open_channel(alice, bob)
    reply = to_alice.encrypt(b"once")
    assert to_bob.decrypt(reply) == b"once"

    with pytest.raises(OlmError):
        to_bob.decrypt(reply)


def test_matches_only_its_own_pre_key_messages() -> None:
    alice, bob = DeviceIdentity.create(), DeviceIdentity.create()
    to_bob, to_alice, first = open_channel(alice, bob)
    _, _, other_first = open_channel(DeviceIdentity.create(), bob)

    assert to_alice.matches(first)
    assert to_alice.matches(to_bob.encrypt(b"again, still pre-key"))
    assert not to_alice.matches(other_first)
    assert not to_bob.matches(to_alice.encrypt(b"a normal message"))


def test_pickled_sessions_keep_working_in_both_directions() -> None:
    alice, bob = DeviceIdentity.create(), DeviceIdentity.create()
    to_bob, to_alice, _ = open_channel(alice, bob)
    assert to_bob.decrypt(to_alice.encrypt(b"before")) == b"before"
    pickles = to_bob.to_pickle(PICKLE_KEY), to_alice.to_pickle(PICKLE_KEY)
    # Only the restored objects are used from here on.
    del to_bob, to_alice

    restored_to_bob = OlmSession.from_pickle(pickles[0], PICKLE_KEY)
    restored_to_alice = OlmSession.from_pickle(pickles[1], PICKLE_KEY)

    assert restored_to_alice.decrypt(restored_to_bob.encrypt(b"after 1")) == b"after 1"
    assert restored_to_bob.decrypt(restored_to_alice.encrypt(b"after 2")) == b"after 2"


def test_a_pickled_identity_remembers_the_consumed_one_time_key() -> None:
    alice, bob = DeviceIdentity.create(), DeviceIdentity.create()
    _, _, first = open_channel(alice, bob)
    restored = DeviceIdentity.from_pickle(bob.to_pickle(PICKLE_KEY), PICKLE_KEY)
    del bob

    with pytest.raises(OlmError):
        restored.create_inbound_session(alice.curve25519_key, first)


def test_a_session_pickle_under_another_key_is_refused() -> None:
    to_bob, _, _ = open_channel(DeviceIdentity.create(), DeviceIdentity.create())
    pickle = to_bob.to_pickle(PICKLE_KEY)

    with pytest.raises(OlmError):
        OlmSession.from_pickle(pickle, b"q" * 32)
    with pytest.raises(OlmError):
        OlmSession.from_pickle("not a pickle", PICKLE_KEY)
    with pytest.raises(ValueError, match="32 bytes"):
        to_bob.to_pickle(b"short")
