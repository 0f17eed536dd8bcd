"""The SDK's local device store: versioned, private, atomic, and it remembers."""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path
from typing import Any

import pytest

from openmessenger.client import Client, StateError
from openmessenger.client import state as state_module
from openmessenger.client.state import STATE_VERSION, StateStore
from openmessenger.core.ids import Address, DeviceId

SERVER = "http://127.0.0.1:8080"

# A state file as version 1 wrote it, with its pickle key. The pickle was made by
# vodozemac 0.10: a later vodozemac must still open it, or devices lose their identity.
GOLDEN_V1_PICKLE_KEY = b"golden-state-pickle-key-32-bytes"
GOLDEN_V1_ED25519 = "tJRUHeJApCfP4p0n7opaWRdPlIHoHKl2p0bTbEd2AR8"
GOLDEN_V1_CURVE25519 = "RGQ8odvSnwz3UQQjVYkf9sDKox6Ps00XIkyE7ZuVly8"
GOLDEN_V1_STATE = {
    "version": 1,
    "server": "http://127.0.0.1:8080",
    "ed25519_key": GOLDEN_V1_ED25519,
    "identity_pickle": (
        "1mTxKkyEf+R3fbAp83qZ38QGmvktfR1vHCR30G+7WoG6rutw1Q7arI7rGMG7TpRxBPoEAXalQvAqcAqUAcS1yK"
        "JAobZ1l5cljBrp1aKqgWukoaFt9w99n7BH9cZM1mFTYc8gqDTLg04iQDFQF90+fx9oxUzAR+DmpCV9KU2nANTv"
        "UJVWk/T3H7Ysq/zoy7Y68f8udS8PDfPPUeo2AnvgN9vXN76U44W4PbB4GVtcHVmUEuMhO6WLn3T/0t5OKfWpE"
        "cc4sOoC4qTD5hSnQXUYXskAHpncl1WudUfHzbogsD3HYmh7Ce58f86+wJveC011zTbUBYI70bb4M2MKQuqHLS6"
        "lstQu5FYkF4wFBcBouTvtw5ZSyjAYAQwFQrhwUjo7h8Ke3BxWZ7js1ry6yfvIGjtK17LnddR8JEYGn6kgTSr0G"
        "5/2hS9dEO9Lvys2JUvD0Sy4v75f4ocSpIOIKKjwUohdz3LTmgPLKY3toI2adZDieoRlj8XfScaOaZUUp3GkFuu"
        "2QPcP4FAp8rprB6yWWoIpBoyMV3M5AHKvq6iXk7AvQTu9AYULhwi5U0w8vcaHDL2vlR5klJ4"
    ),
    "device_id": "dev-golden",
    "address": "4821937*localhost",
    "access_token": "token-golden",
    "stream_position": 17,
}


@pytest.fixture
def profile(tmp_path: Path) -> Path:
    return tmp_path / "profiles" / "alice"


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def write_golden(profile: Path, document: dict[str, Any]) -> None:
    profile.mkdir(parents=True)
    (profile / "state.json").write_text(json.dumps(document))
    (profile / "pickle.key").write_bytes(GOLDEN_V1_PICKLE_KEY)


def test_a_profile_never_used_has_no_state(profile: Path) -> None:
    assert StateStore(profile).load() is None
    assert not profile.exists()


def test_first_use_creates_a_private_directory_and_private_files(profile: Path) -> None:
    StateStore(profile).load_or_create(SERVER)

    assert mode_of(profile) == 0o700
    assert mode_of(profile / "state.json") == 0o600
    assert mode_of(profile / "pickle.key") == 0o600
    assert len((profile / "pickle.key").read_bytes()) == 32


def test_state_file_is_versioned_json_without_the_pickle_key(profile: Path) -> None:
    created = StateStore(profile).load_or_create(SERVER)

    document = json.loads((profile / "state.json").read_text())
    assert document["version"] == STATE_VERSION == 1
    assert document["server"] == SERVER
    assert document["ed25519_key"] == created.ed25519_key
    assert document["device_id"] is None
    assert document["stream_position"] == 0
    key = (profile / "pickle.key").read_bytes()
    assert key not in (profile / "state.json").read_bytes()


def test_the_identity_is_made_once_and_opens_with_the_profiles_key(profile: Path) -> None:
    store = StateStore(profile)
    first = store.load_or_create(SERVER)

    again = StateStore(profile).load_or_create(SERVER)

    assert again.ed25519_key == first.ed25519_key
    assert store.identity(again).ed25519_key == first.ed25519_key


def test_state_file_alone_does_not_open_the_identity(profile: Path) -> None:
    store = StateStore(profile)
    state = store.load_or_create(SERVER)
    (profile / "pickle.key").write_bytes(b"z" * 32)

    with pytest.raises(StateError, match="identity"):
        store.identity(state)


def test_session_and_cursor_survive_a_reload(profile: Path) -> None:
    store = StateStore(profile)
    store.load_or_create(SERVER)
    store.save_session(DeviceId("dev-1"), Address("4821937*localhost"), "secret-token")
    store.advance_cursor(42)

    reloaded = StateStore(profile).load()

    assert reloaded is not None
    assert reloaded.is_registered
    assert reloaded.device_id == "dev-1"
    assert reloaded.address == "4821937*localhost"
    assert reloaded.access_token == "secret-token"
    assert reloaded.stream_position == 42


def test_the_cursor_never_moves_back(profile: Path) -> None:
    store = StateStore(profile)
    store.load_or_create(SERVER)
    store.advance_cursor(10)

    after_stale_writer = store.advance_cursor(3)

    assert after_stale_writer.stream_position == 10
    reloaded = store.load()
    assert reloaded is not None
    assert reloaded.stream_position == 10


def test_a_save_replaces_the_file_instead_of_rewriting_it(profile: Path) -> None:
    # A reader holding the old file still sees a whole document: the new state
    # went to a new file that was renamed over the old one, never truncated in place.
    store = StateStore(profile)
    store.load_or_create(SERVER)
    with (profile / "state.json").open("rb") as old_file:
        store.advance_cursor(5)
        old_document = json.loads(old_file.read())

    assert old_document["stream_position"] == 0
    assert json.loads((profile / "state.json").read_text())["stream_position"] == 5
    assert mode_of(profile / "state.json") == 0o600
    assert sorted(p.name for p in profile.iterdir()) == ["pickle.key", "state.json", "state.lock"]


def test_golden_version_1_state_loads(profile: Path) -> None:
    write_golden(profile, GOLDEN_V1_STATE)
    store = StateStore(profile)

    loaded = store.load()

    assert loaded is not None
    assert loaded.server == SERVER
    assert loaded.device_id == "dev-golden"
    assert loaded.address == "4821937*localhost"
    assert loaded.access_token == "token-golden"
    assert loaded.stream_position == 17
    identity = store.identity(loaded)
    assert identity.ed25519_key == GOLDEN_V1_ED25519
    assert identity.curve25519_key == GOLDEN_V1_CURVE25519


def test_state_from_a_newer_version_is_refused_not_misread(profile: Path) -> None:
    write_golden(profile, {**GOLDEN_V1_STATE, "version": STATE_VERSION + 1})

    with pytest.raises(StateError, match="newer"):
        StateStore(profile).load()


@pytest.mark.parametrize(
    "document",
    [
        {k: v for k, v in GOLDEN_V1_STATE.items() if k != "version"},
        {**GOLDEN_V1_STATE, "stream_position": -1},
        {**GOLDEN_V1_STATE, "server": None},
        [1, 2, 3],
    ],
    ids=["no-version", "negative-cursor", "no-server", "not-an-object"],
)
def test_damaged_state_is_an_error_not_a_crash(profile: Path, document: Any) -> None:
    write_golden(profile, {})
    (profile / "state.json").write_text(json.dumps(document))

    with pytest.raises(StateError):
        StateStore(profile).load()


def test_invalid_json_is_a_state_error(profile: Path) -> None:
    write_golden(profile, {})
    (profile / "state.json").write_text('{"version": 1, "serv')

    with pytest.raises(StateError, match="JSON"):
        StateStore(profile).load()


def test_older_versions_are_migrated_step_by_step(
    profile: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Pretend the current format is 3 and this file is a version 1 that called
    # the cursor "since": the hook must run 1 -> 2 -> 3 in order.
    def rename_cursor(document: dict[str, Any]) -> dict[str, Any]:
        document["stream_position"] = document.pop("since")
        return document

    def add_nothing(document: dict[str, Any]) -> dict[str, Any]:
        return document

    monkeypatch.setattr(state_module, "STATE_VERSION", 3)
    monkeypatch.setattr(state_module, "MIGRATIONS", {1: rename_cursor, 2: add_nothing})
    old = {k: v for k, v in GOLDEN_V1_STATE.items() if k != "stream_position"}
    write_golden(profile, {**old, "since": 9})

    loaded = StateStore(profile).load()

    assert loaded is not None
    assert loaded.stream_position == 9


def test_a_profile_stays_with_the_node_it_registered_on(profile: Path) -> None:
    write_golden(profile, GOLDEN_V1_STATE)

    with pytest.raises(StateError, match=re.escape("belongs to http://127.0.0.1:8080")):
        Client("http://127.0.0.1:9999", profile)


async def test_a_trailing_slash_is_the_same_node(profile: Path) -> None:
    write_golden(profile, GOLDEN_V1_STATE)

    async with Client("http://127.0.0.1:8080/", profile) as client:
        assert client.address == "4821937*localhost"
        assert client.stream_position == 17
