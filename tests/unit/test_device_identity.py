"""A device identity signs what the node verifies, and survives a pickle round trip."""

from __future__ import annotations

import base64

import pytest
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from openmessenger.crypto.device_identity import DeviceIdentity, IdentityError
from openmessenger.protocol.client_api import signed_challenge_bytes

PICKLE_KEY = b"k" * 32


def unpadded_b64decode(value: str) -> bytes:
    assert "=" not in value, "keys and signatures are unpadded base64"
    return base64.b64decode(value + "=" * (-len(value) % 4), validate=True)


def verify(identity: DeviceIdentity, data: bytes, signature: str) -> None:
    VerifyKey(unpadded_b64decode(identity.ed25519_key)).verify(data, unpadded_b64decode(signature))


def test_public_keys_are_32_byte_unpadded_base64() -> None:
    identity = DeviceIdentity.create()

    assert len(unpadded_b64decode(identity.ed25519_key)) == 32
    assert len(unpadded_b64decode(identity.curve25519_key)) == 32


def test_every_identity_has_its_own_keys() -> None:
    first, second = DeviceIdentity.create(), DeviceIdentity.create()

    assert first.ed25519_key != second.ed25519_key
    assert first.curve25519_key != second.curve25519_key


def test_signature_over_a_challenge_verifies_with_pynacl() -> None:
    identity = DeviceIdentity.create()
    data = signed_challenge_bytes("a-challenge", "chat.example.org")

    signature = identity.sign(data)

    assert len(unpadded_b64decode(signature)) == 64
    verify(identity, data, signature)


def test_signature_does_not_verify_for_other_data() -> None:
    identity = DeviceIdentity.create()
    signature = identity.sign(signed_challenge_bytes("a-challenge", "chat.example.org"))

    with pytest.raises(BadSignatureError):
        verify(identity, signed_challenge_bytes("a-challenge", "evil.example.org"), signature)


def test_pickle_round_trip_keeps_the_keys_and_the_ability_to_sign() -> None:
    original = DeviceIdentity.create()
    pickle = original.to_pickle(PICKLE_KEY)

    restored = DeviceIdentity.from_pickle(pickle, PICKLE_KEY)

    assert restored.ed25519_key == original.ed25519_key
    assert restored.curve25519_key == original.curve25519_key
    verify(original, b"after restore", restored.sign(b"after restore"))


def test_pickle_does_not_contain_the_public_key_in_clear() -> None:
    identity = DeviceIdentity.create()

    assert identity.ed25519_key not in identity.to_pickle(PICKLE_KEY)


def test_pickle_under_another_key_is_refused() -> None:
    pickle = DeviceIdentity.create().to_pickle(PICKLE_KEY)

    with pytest.raises(IdentityError):
        DeviceIdentity.from_pickle(pickle, b"x" * 32)


def test_damaged_pickle_is_refused() -> None:
    with pytest.raises(IdentityError):
        DeviceIdentity.from_pickle("not a pickle", PICKLE_KEY)


@pytest.mark.parametrize("key", [b"", b"short", b"k" * 31, b"k" * 33])
def test_pickle_key_must_be_32_bytes(key: bytes) -> None:
    identity = DeviceIdentity.create()

    with pytest.raises(ValueError, match="32 bytes"):
        identity.to_pickle(key)
    with pytest.raises(ValueError, match="32 bytes"):
        DeviceIdentity.from_pickle(identity.to_pickle(PICKLE_KEY), key)


def test_repr_shows_only_the_public_key() -> None:
    identity = DeviceIdentity.create()

    assert repr(identity) == f"DeviceIdentity(ed25519_key={identity.ed25519_key!r})"
