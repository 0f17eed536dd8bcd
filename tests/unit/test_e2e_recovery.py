"""The recovery key: what the user writes down, and what it opens."""

from __future__ import annotations

import base64
import re

import pytest

from openmessenger.crypto.account_keys import verify_signature
from openmessenger.crypto.recovery import (
    BackupDecryptionError,
    InvalidRecoveryKey,
    RecoveryKey,
    encrypt_for_backup,
)
from openmessenger.protocol.e2e import BackupEntry


def retype(display: str, at: int) -> str:
    """``display`` with the character at ``at`` (ignoring spaces) mistyped."""
    compact = display.replace(" ", "")
    wrong = "A" if compact[at] != "A" else "B"
    return compact[:at] + wrong + compact[at + 1 :]


def test_display_form_is_fourteen_groups_of_four() -> None:
    key = RecoveryKey.generate()

    assert re.fullmatch(r"[A-Z2-7]{4}( [A-Z2-7]{4}){13}", str(key))


def test_display_form_parses_back_ignoring_spaces_and_case() -> None:
    key = RecoveryKey.generate()
    display = str(key)

    for typed in (display, display.lower(), display.replace(" ", ""), f"  {display}  "):
        parsed = RecoveryKey.parse(typed)
        assert parsed == key
        assert parsed.backup_public_key == key.backup_public_key


def test_repr_does_not_show_the_key() -> None:
    key = RecoveryKey.generate()
    compact = str(key).replace(" ", "")

    assert compact[4:12] not in repr(key)
    assert str(key).split(" ")[3] not in repr(key)


@pytest.mark.parametrize("at", [4, 20, 40, 55])
def test_a_typo_is_caught(at: int) -> None:
    typo = retype(str(RecoveryKey.generate()), at)

    with pytest.raises(InvalidRecoveryKey, match="typo"):
        RecoveryKey.parse(typo)


def test_a_key_with_another_prefix_is_refused() -> None:
    body = bytes(range(32))
    data = b"XX" + body
    parity = 0
    for byte in data:
        parity ^= byte
    text = base64.b32encode(data + bytes([parity])).decode()

    with pytest.raises(InvalidRecoveryKey, match="not an OpenMessenger recovery key"):
        RecoveryKey.parse(text)


@pytest.mark.parametrize("typed", ["", "ABCD EFGH", "A" * 57])
def test_a_wrong_length_is_refused(typed: str) -> None:
    with pytest.raises(InvalidRecoveryKey, match="56"):
        RecoveryKey.parse(typed)


def test_characters_outside_base32_are_refused() -> None:
    typed = "0" + str(RecoveryKey.generate()).replace(" ", "")[1:]

    with pytest.raises(InvalidRecoveryKey, match="A to Z"):
        RecoveryKey.parse(typed)


def test_invalid_recovery_key_is_a_value_error() -> None:
    assert issubclass(InvalidRecoveryKey, ValueError)


def test_a_backup_opens_with_the_right_recovery_key_only() -> None:
    key = RecoveryKey.generate()
    entry = encrypt_for_backup(key.backup_public_key, b'{"signing_key_seed": "..."}')

    assert RecoveryKey.parse(str(key)).decrypt_backup(entry) == b'{"signing_key_seed": "..."}'
    with pytest.raises(BackupDecryptionError):
        RecoveryKey.generate().decrypt_backup(entry)


def test_a_backup_entry_survives_the_wire() -> None:
    key = RecoveryKey.generate()
    entry = encrypt_for_backup(key.backup_public_key, b"secret")

    over_the_wire = BackupEntry.model_validate_json(entry.model_dump_json())

    assert "=" not in entry.ciphertext + entry.mac + entry.ephemeral_key
    assert key.decrypt_backup(over_the_wire) == b"secret"


def test_a_damaged_backup_entry_is_refused() -> None:
    key = RecoveryKey.generate()
    entry = encrypt_for_backup(key.backup_public_key, b"secret")

    with pytest.raises(BackupDecryptionError):
        key.decrypt_backup(entry.model_copy(update={"mac": "AAAAAAAAAAA"}))
    with pytest.raises(BackupDecryptionError):
        key.decrypt_backup(entry.model_copy(update={"ciphertext": "A"}))


def test_encrypting_to_a_bad_backup_key_is_refused() -> None:
    with pytest.raises(ValueError):
        encrypt_for_backup("not a key", b"secret")


def test_keys_follow_from_the_recovery_key_alone() -> None:
    key = RecoveryKey.generate()
    again = RecoveryKey.parse(str(key))
    other = RecoveryKey.generate()

    assert again.auth_key.public_key == key.auth_key.public_key
    assert again.auth_key.seed == key.auth_key.seed
    assert again.backup_public_key == key.backup_public_key
    assert other.auth_key.public_key != key.auth_key.public_key
    assert other.backup_public_key != key.backup_public_key


def test_the_auth_key_signs_what_the_node_checks() -> None:
    key = RecoveryKey.generate()
    challenge = b"openmessenger/v1/recovery\n..."

    signature = RecoveryKey.parse(str(key)).auth_key.sign(challenge)

    assert verify_signature(key.auth_key.public_key, challenge, signature)
