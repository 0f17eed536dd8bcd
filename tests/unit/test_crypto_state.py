"""The device's end-to-end store (``crypto.db``): a state saved by this version
opens and goes on working, and a state from a newer version is refused."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from openmessenger.client.crypto_store import CRYPTO_FILE, SCHEMA_VERSION, CryptoStore
from openmessenger.client.errors import StateError
from openmessenger.protocol.e2e import OlmCiphertext
from tests.support.golden_crypto import ALICE, PICKLE_KEY

DATA = Path(__file__).resolve().parents[1] / "data"
CURRENT = DATA / f"crypto_state_v{SCHEMA_VERSION}"
EVERY_VERSION = sorted(DATA.glob("crypto_state_v*"))


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    profile = tmp_path / "profile"
    shutil.copytree(CURRENT, profile)
    return profile


def expected(golden: Path) -> dict[str, object]:
    return dict(json.loads((golden / "expected.json").read_text()))


def test_there_is_a_saved_state_of_the_current_version() -> None:
    assert expected(CURRENT)["schema_version"] == SCHEMA_VERSION
    assert len(EVERY_VERSION) == SCHEMA_VERSION


@pytest.mark.parametrize("golden", EVERY_VERSION, ids=lambda p: p.name)
def test_a_saved_state_opens_migrated_and_decrypts(golden: Path, tmp_path: Path) -> None:
    saved = tmp_path / "profile"
    shutil.copytree(golden, saved)
    wanted = expected(golden)
    store = CryptoStore(saved, PICKLE_KEY)
    with store.transaction():
        [olm] = store.olm_sessions(str(wanted["olm_peer_key"]))
        message = OlmCiphertext.model_validate(wanted["olm_message"])
        assert olm.decrypt(message).decode() == wanted["olm_plaintext"]
        inbound = store.inbound(str(wanted["megolm_sender_key"]), str(wanted["megolm_session_id"]))
        assert inbound is not None
        plaintext, index = inbound.session.decrypt(str(wanted["megolm_ciphertext"]))
        assert plaintext.decode() == wanted["megolm_plaintext"] and index == 0
        pin = store.pin(ALICE)
        assert pin is not None and (pin.version, pin.devices) == (3, frozenset({"dev-1", "dev-2"}))
        assert store.secret("sealing_key") == "a sealed secret"
        assert store.setting("to_device_since") == "42"
        store.save_pin(ALICE, pin, "{}")  # the current schema's columns are all there
    store.close()
    with sqlite3.connect(saved / CRYPTO_FILE) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_the_state_does_not_open_with_another_key(saved: Path) -> None:
    store = CryptoStore(saved, b"x" * 32)
    with pytest.raises(StateError), store.transaction():
        store.secret("sealing_key")
    store.close()


def test_secrets_are_not_stored_readable(saved: Path) -> None:
    raw = (saved / CRYPTO_FILE).read_bytes()
    assert b"a sealed secret" not in raw


def test_a_state_written_by_a_newer_version_is_refused(saved: Path) -> None:
    with sqlite3.connect(saved / CRYPTO_FILE) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StateError, match="newer"):
        CryptoStore(saved, PICKLE_KEY)


def test_a_new_profile_gets_the_current_schema(tmp_path: Path) -> None:
    CryptoStore(tmp_path, PICKLE_KEY).close()
    with sqlite3.connect(tmp_path / CRYPTO_FILE) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert (tmp_path / CRYPTO_FILE).stat().st_mode & 0o777 == 0o600
