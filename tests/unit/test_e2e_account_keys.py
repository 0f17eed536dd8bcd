"""The account signing key, device lists, and the numbers people compare."""

from __future__ import annotations

import base64
import hashlib
import re

import pytest

from openmessenger.crypto.account_keys import (
    AccountSigningKey,
    sign_device_list,
    verify_device_list,
    verify_signature,
)
from openmessenger.crypto.device_identity import DeviceIdentity
from openmessenger.crypto.fingerprints import device_fingerprint, link_check, safety_number
from openmessenger.protocol.e2e import DeviceList, ListedDevice, SignedDeviceList


def listed(identity: DeviceIdentity, device_id: str) -> ListedDevice:
    return ListedDevice(
        device_id=device_id,
        ed25519_key=identity.ed25519_key,
        curve25519_key=identity.curve25519_key,
    )


def device_list(key: AccountSigningKey, *devices: ListedDevice, version: int = 1) -> DeviceList:
    return DeviceList(
        address="alice@chat.example.org",
        signing_key=key.public_key,
        version=version,
        devices=list(devices),
    )


def test_signing_key_seed_round_trip() -> None:
    key = AccountSigningKey.generate()

    again = AccountSigningKey.from_seed(key.seed)

    assert again.public_key == key.public_key
    assert len(key.seed) == 43 and len(key.public_key) == 43
    assert "=" not in key.seed + key.public_key
    assert key.seed not in repr(key)


@pytest.mark.parametrize("seed", ["", "short", "A" * 44, "!" * 43])
def test_a_bad_seed_is_refused(seed: str) -> None:
    with pytest.raises(ValueError):
        AccountSigningKey.from_seed(seed)


def test_signatures_verify_only_for_their_data_and_key() -> None:
    key = AccountSigningKey.generate()
    signature = key.sign(b"data")

    assert len(signature) == 86
    assert verify_signature(key.public_key, b"data", signature)
    assert not verify_signature(key.public_key, b"other data", signature)
    assert not verify_signature(AccountSigningKey.generate().public_key, b"data", signature)
    assert not verify_signature(key.public_key, b"data", "not a signature")


def test_a_signed_device_list_verifies() -> None:
    key = AccountSigningKey.generate()
    signed = sign_device_list(key, device_list(key, listed(DeviceIdentity.create(), "phone")))

    assert verify_device_list(signed)
    # And it still does after a trip over the wire.
    assert verify_device_list(SignedDeviceList.model_validate_json(signed.model_dump_json()))


def test_a_device_added_to_a_signed_list_breaks_the_signature() -> None:
    key = AccountSigningKey.generate()
    signed = sign_device_list(key, device_list(key, listed(DeviceIdentity.create(), "phone")))

    intruder = listed(DeviceIdentity.create(), "node-made")
    grown = signed.list.model_copy(update={"devices": [*signed.list.devices, intruder]})

    assert not verify_device_list(SignedDeviceList(list=grown, signature=signed.signature))


def test_a_changed_version_breaks_the_signature() -> None:
    key = AccountSigningKey.generate()
    signed = sign_device_list(key, device_list(key, version=3))

    older = signed.list.model_copy(update={"version": 2})

    assert not verify_device_list(SignedDeviceList(list=older, signature=signed.signature))


def test_a_list_re_signed_by_another_key_does_not_verify_under_the_named_key() -> None:
    key, other = AccountSigningKey.generate(), AccountSigningKey.generate()
    the_list = device_list(key)

    forged = SignedDeviceList(list=the_list, signature=other.sign(the_list.signed_bytes()))

    assert not verify_device_list(forged)
    with pytest.raises(ValueError, match="another account signing key"):
        sign_device_list(other, the_list)


def test_device_fingerprint_groups_the_key() -> None:
    key = DeviceIdentity.create().ed25519_key

    fingerprint = device_fingerprint(key)

    assert fingerprint.replace(" ", "") == key
    assert all(len(group) == 4 for group in fingerprint.split(" ")[:-1])


def test_link_check_is_eight_base32_characters_per_key() -> None:
    first, second = DeviceIdentity.create().ed25519_key, DeviceIdentity.create().ed25519_key

    assert re.fullmatch(r"[A-Z2-7]{8}", link_check(first))
    assert link_check(first) == link_check(first)
    assert link_check(first) != link_check(second)


def test_safety_number_is_the_same_on_both_sides() -> None:
    alice, bob = AccountSigningKey.generate().public_key, AccountSigningKey.generate().public_key

    seen_by_alice = safety_number("alice@a.example", alice, "bob@b.example", bob)
    seen_by_bob = safety_number("bob@b.example", bob, "alice@a.example", alice)

    assert seen_by_alice == seen_by_bob
    assert re.fullmatch(r"\d{5}( \d{5}){11}", seen_by_alice)


def test_safety_number_changes_when_either_key_changes() -> None:
    alice, bob = AccountSigningKey.generate().public_key, AccountSigningKey.generate().public_key
    number = safety_number("alice@a.example", alice, "bob@b.example", bob)
    new_alice, new_bob = (AccountSigningKey.generate().public_key for _ in range(2))

    changed_alice = safety_number("alice@a.example", new_alice, "bob@b.example", bob)
    changed_bob = safety_number("alice@a.example", alice, "bob@b.example", new_bob)

    assert number != changed_alice
    assert number != changed_bob
    # Only the half of the side whose key changed moves.
    assert changed_alice[36:] == number[36:]
    assert changed_bob[:35] == number[:35]


def test_safety_number_follows_the_documented_construction() -> None:
    # Written out from the spec, so another client can check itself against it.
    def half(address: str, key: str) -> str:
        raw = base64.b64decode(key + "=")
        digest = b"openmessenger/v1/safety-number\n" + address.encode() + b"\n" + raw
        for _ in range(5200):
            digest = hashlib.sha512(digest + raw).digest()
        chunks = (int.from_bytes(digest[i : i + 5], "big") % 100_000 for i in range(0, 30, 5))
        return "".join(f"{chunk:05d}" for chunk in chunks)

    zed, amy = AccountSigningKey.generate().public_key, AccountSigningKey.generate().public_key
    digits = half("amy@a.example", amy) + half("zed@z.example", zed)

    number = safety_number("zed@z.example", zed, "amy@a.example", amy)

    assert number == " ".join(digits[i : i + 5] for i in range(0, 60, 5))


def test_safety_number_refuses_a_bad_key() -> None:
    with pytest.raises(ValueError):
        safety_number("a@a.example", "bad", "b@b.example", AccountSigningKey.generate().public_key)
