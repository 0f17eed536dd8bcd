"""Sealed bodies (what the node stores of plaintext it saw) and local secrets at rest."""

from __future__ import annotations

import base64

import pytest

from openmessenger.crypto.local_box import LocalBox, LocalBoxError
from openmessenger.crypto.sealing import SealingError, SealingKeyPair, seal
from openmessenger.protocol.e2e import SealedBody


def flip(text: str, at: int) -> str:
    raw = bytearray(base64.b64decode(text + "=" * (-len(text) % 4)))
    raw[at] ^= 0x01
    return base64.b64encode(raw).decode().rstrip("=")


def test_both_devices_open_the_sealed_text() -> None:
    phone, laptop = SealingKeyPair.generate(), SealingKeyPair.generate()

    body = seal("héllo from v1", {"phone": phone.public_key, "laptop": laptop.public_key})

    assert phone.open(body, "phone") == "héllo from v1"
    assert laptop.open(body, "laptop") == "héllo from v1"
    assert "héllo" not in body.model_dump_json()


def test_a_sealed_body_opens_after_the_wire() -> None:
    phone = SealingKeyPair.generate()
    body = seal("text", {"phone": phone.public_key})

    assert phone.open(SealedBody.model_validate_json(body.model_dump_json()), "phone") == "text"


def test_a_third_device_cannot_open() -> None:
    phone, laptop, stranger = (SealingKeyPair.generate() for _ in range(3))
    body = seal("private", {"phone": phone.public_key, "laptop": laptop.public_key})

    with pytest.raises(SealingError, match="not sealed to device"):
        stranger.open(body, "stranger")
    # Nor by using another device's entry.
    with pytest.raises(SealingError):
        stranger.open(body, "phone")


def test_a_tampered_ciphertext_fails() -> None:
    phone = SealingKeyPair.generate()
    body = seal("do not change me", {"phone": phone.public_key})

    for at in (0, 30, -1):
        tampered = body.model_copy(update={"ciphertext": flip(body.ciphertext, at)})
        with pytest.raises(SealingError):
            phone.open(tampered, "phone")


def test_a_tampered_sealed_key_fails() -> None:
    phone = SealingKeyPair.generate()
    body = seal("do not change me", {"phone": phone.public_key})
    sealed_key = body.keys["phone"]

    for damaged in (
        sealed_key.model_copy(update={"ciphertext": flip(sealed_key.ciphertext, 20)}),
        sealed_key.model_copy(update={"mac": flip(sealed_key.mac, 0)}),
        sealed_key.model_copy(update={"ephemeral_key": flip(sealed_key.ephemeral_key, 5)}),
    ):
        with pytest.raises(SealingError):
            phone.open(body.model_copy(update={"keys": {"phone": damaged}}), "phone")


def test_sealing_to_nobody_gives_a_body_nobody_opens() -> None:
    body = seal("lost", {})

    assert body.keys == {}
    with pytest.raises(SealingError):
        SealingKeyPair.generate().open(body, "phone")


def test_a_bad_recipient_key_is_refused() -> None:
    with pytest.raises(SealingError, match="'phone'"):
        seal("text", {"phone": "not a key"})


def test_sealing_secret_round_trip() -> None:
    pair = SealingKeyPair.generate()
    body = seal("kept", {"phone": pair.public_key})

    restored = SealingKeyPair.from_secret(pair.secret)

    assert restored.public_key == pair.public_key
    assert restored.open(body, "phone") == "kept"
    assert pair.secret not in repr(pair)
    with pytest.raises(ValueError):
        SealingKeyPair.from_secret("not a secret")


def test_local_box_round_trip() -> None:
    box = LocalBox(b"k" * 32)

    sealed = box.seal(b"signing key seed")

    assert "=" not in sealed
    assert b"signing key seed" not in base64.b64decode(sealed + "=" * (-len(sealed) % 4))
    assert LocalBox(b"k" * 32).open(sealed) == b"signing key seed"
    assert box.seal(b"same") != box.seal(b"same")  # a fresh nonce each time


def test_local_box_detects_tampering_and_the_wrong_key() -> None:
    box = LocalBox(b"k" * 32)
    sealed = box.seal(b"secret")

    for at in (0, 24, -1):
        with pytest.raises(LocalBoxError):
            box.open(flip(sealed, at))
    with pytest.raises(LocalBoxError):
        LocalBox(b"x" * 32).open(sealed)
    with pytest.raises(LocalBoxError):
        box.open("not base64!")
    with pytest.raises(LocalBoxError):
        box.open("")


@pytest.mark.parametrize("key", [b"", b"k" * 31, b"k" * 33])
def test_local_box_key_must_be_32_bytes(key: bytes) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        LocalBox(key)
