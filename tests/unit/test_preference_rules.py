"""The pure rules of preferences (core/preferences.py) and request notes."""

from __future__ import annotations

import pytest

from openmessenger.core.contact_requests import MAX_NOTE_CHARS, validate_note
from openmessenger.core.errors import InvalidInput
from openmessenger.core.preferences import (
    Level,
    Name,
    check_level,
    decode,
    encode,
    parse_text,
    parse_value,
    resolve,
)


def test_the_narrowest_level_wins() -> None:
    every = {
        Level.ACCOUNT: 1,
        Level.DEVICE: 2,
        Level.CONTACT: 3,
        Level.CONVERSATION: 4,
    }
    order = []
    while every:
        found = resolve(Name.DISAPPEARING_TIMER, every)
        order.append(found.level)
        del every[Level(found.level)]
    assert order == ["conversation", "contact", "device", "account"]
    assert resolve(Name.DISAPPEARING_TIMER, {}).level == "default"


def test_a_level_a_preference_does_not_have_is_ignored_and_refused() -> None:
    assert resolve(Name.ACCEPT_REQUESTS, {Level.DEVICE: "anyone"}).value == "off"
    with pytest.raises(InvalidInput) as refused:
        check_level(Name.ACCEPT_APPS, Level.DEVICE)
    assert refused.value.field == "level" and "account, contact" in refused.value.reason


@pytest.mark.parametrize(
    ("name", "value"),
    [
        (Name.MUTE, "true"),
        (Name.MUTE, 0),
        (Name.SEND_RECEIPTS, None),
        (Name.DISAPPEARING_TIMER, -1),
        (Name.DISAPPEARING_TIMER, 1.5),
        (Name.DISAPPEARING_TIMER, False),
        (Name.ACCEPT_REQUESTS, "OFF"),
        (Name.ACCEPT_APPS, ["a"]),
        (Name.ACCEPT_APPS, ["ok-app"] * 101),
    ],
)
def test_bad_values_name_the_value(name: Name, value: object) -> None:
    with pytest.raises(InvalidInput) as refused:
        parse_value(name, value)
    assert refused.value.field == "value"


def test_values_round_trip_and_a_stale_one_falls_back_to_the_default() -> None:
    for name, value in (
        (Name.MUTE, True),
        (Name.DISAPPEARING_TIMER, 3600),
        (Name.DISAPPEARING_TIMER, "off"),
        (Name.ACCEPT_REQUESTS, "verified"),
        (Name.ACCEPT_APPS, ["b-app", "a-app"]),
    ):
        stored = parse_value(name, value)
        assert decode(name, encode(stored)) == stored
    assert parse_value(Name.ACCEPT_APPS, ["b-app", "a-app", "b-app"]) == ["a-app", "b-app"]
    assert decode(Name.MUTE, '"garbage"') is False
    assert decode(Name.SEND_RECEIPTS, "not json") is True


def test_terminal_text_becomes_json_values() -> None:
    assert parse_text(Name.MUTE, "On") is True
    assert parse_text(Name.SEND_RECEIPTS, "no") is False
    assert parse_text(Name.MUTE, "maybe") == "maybe"  # for the node to refuse
    assert parse_text(Name.DISAPPEARING_TIMER, "300") == 300
    assert parse_text(Name.DISAPPEARING_TIMER, "OFF") == "off"
    assert parse_text(Name.ACCEPT_APPS, "shop, games") == ["shop", "games"]
    assert parse_text(Name.ACCEPT_APPS, "any") is None


def test_notes_are_short_printable_text() -> None:
    assert validate_note("  hi there \n") == "hi there"
    assert validate_note("") is None
    assert validate_note("line one\nline two") == "line one\nline two"
    for bad in ("x" * (MAX_NOTE_CHARS + 1), "bell\a"):
        with pytest.raises(InvalidInput) as refused:
            validate_note(bad)
        assert refused.value.field == "note"
