"""Preferences: a user's choices at four levels, and how they combine. Pure.

Levels, narrowest first; the narrowest level where a preference is set wins::

    conversation  >  contact  >  device  >  account  >  default

A 1:1 conversation's contact is its peer, so a conversation context also
reads the contact level. Each preference is valid at some levels only
(``SPECS``); setting it elsewhere is bad input naming ``level``.

    name                values                          levels                 default
    accept_requests     "off" | "verified" | "anyone"   account                "off"
    accept_apps         [app ids] | null (any app)      account, contact       null
    mute                true | false                    all four               false
    disappearing_timer  seconds 1..604800 | "off"       all four               "off"
    send_receipts       true | false                    all four               true

``accept_apps`` is stored as the app allowlists (services/apps.py); this module
only knows its rules.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from openmessenger.core.apps import parse_app_id
from openmessenger.core.ephemeral import MAX_LIFESPAN_SECONDS
from openmessenger.core.errors import InvalidInput

PreferenceValue = str | bool | int | list[str] | None


class Level(enum.StrEnum):
    ACCOUNT = "account"
    CONTACT = "contact"
    DEVICE = "device"
    CONVERSATION = "conversation"


PRECEDENCE: tuple[Level, ...] = (Level.CONVERSATION, Level.CONTACT, Level.DEVICE, Level.ACCOUNT)
"""Narrowest first: the first level where a preference is set gives its value."""

DEFAULT_LEVEL = "default"
"""What ``level`` says of a preference set nowhere."""


class Name(enum.StrEnum):
    ACCEPT_REQUESTS = "accept_requests"
    ACCEPT_APPS = "accept_apps"
    MUTE = "mute"
    DISAPPEARING_TIMER = "disappearing_timer"
    SEND_RECEIPTS = "send_receipts"


class AcceptRequests(enum.StrEnum):
    OFF = "off"
    """Pass codes only (the default, as Openmsg intends)."""
    VERIFIED = "verified"
    """Requests from registered (verified) accounts only."""
    ANYONE = "anyone"


OFF = "off"
MAX_DISAPPEARING_SECONDS = MAX_LIFESPAN_SECONDS
"""The timer is the lifespan clients give disappearing messages: the same bound."""
"""The longest lifespan a disappearing message may be given (as `send --lifespan`)."""
MAX_ACCEPT_APPS = 100


def _accept_requests(value: object) -> PreferenceValue:
    if isinstance(value, str) and value in AcceptRequests.__members__.values():
        return str(value)
    raise InvalidInput("value", "accept_requests must be one of off, verified, anyone")


def _boolean(name: str) -> Callable[[object], PreferenceValue]:
    def parse(value: object) -> PreferenceValue:
        if isinstance(value, bool):
            return value
        raise InvalidInput("value", f"{name} must be true or false")

    return parse


def _timer(value: object) -> PreferenceValue:
    if value == OFF:
        return OFF
    if (
        isinstance(value, int)
        and not isinstance(value, bool)
        and 1 <= value <= MAX_DISAPPEARING_SECONDS
    ):
        return value
    raise InvalidInput(
        "value",
        f'disappearing_timer must be whole seconds from 1 to {MAX_DISAPPEARING_SECONDS}, or "off"',
    )


def _apps(value: object) -> PreferenceValue:
    if value is None:
        return None
    if not isinstance(value, list):
        raise InvalidInput("value", "accept_apps must be a list of app ids, or null for any app")
    if len(value) > MAX_ACCEPT_APPS:
        raise InvalidInput("value", f"accept_apps must name at most {MAX_ACCEPT_APPS} apps")
    return sorted({parse_app_id(item, field="value") for item in value})


@dataclass(frozen=True, slots=True)
class Spec:
    name: Name
    levels: frozenset[Level]
    default: PreferenceValue
    parse: Callable[[object], PreferenceValue]


_ALL = frozenset(Level)

SPECS: dict[Name, Spec] = {
    spec.name: spec
    for spec in (
        Spec(
            Name.ACCEPT_REQUESTS,
            frozenset({Level.ACCOUNT}),
            AcceptRequests.OFF.value,
            _accept_requests,
        ),
        Spec(Name.ACCEPT_APPS, frozenset({Level.ACCOUNT, Level.CONTACT}), None, _apps),
        Spec(Name.MUTE, _ALL, False, _boolean("mute")),
        Spec(Name.DISAPPEARING_TIMER, _ALL, OFF, _timer),
        Spec(Name.SEND_RECEIPTS, _ALL, True, _boolean("send_receipts")),
    )
}


def parse_name(value: object, *, field: str = "name") -> Name:
    if isinstance(value, str) and value in Name.__members__.values():
        return Name(value)
    raise InvalidInput(field, f"must be one of {', '.join(n.value for n in Name)}")


def parse_level(value: object, *, field: str = "level") -> Level:
    if isinstance(value, str) and value in Level.__members__.values():
        return Level(value)
    raise InvalidInput(field, f"must be one of {', '.join(lv.value for lv in Level)}")


def check_level(name: Name, level: Level) -> None:
    """Bad input naming ``level`` when ``name`` cannot be set at ``level``."""
    allowed = SPECS[name].levels
    if level not in allowed:
        where = ", ".join(lv.value for lv in PRECEDENCE[::-1] if lv in allowed)
        raise InvalidInput("level", f"{name.value} can be set at this level only: {where}")


def parse_value(name: Name, value: object) -> PreferenceValue:
    """The canonical value, or bad input naming ``value``."""
    return SPECS[name].parse(value)


def encode(value: PreferenceValue) -> str:
    return json.dumps(value, separators=(",", ":"))


def decode(name: Name, stored: str) -> PreferenceValue:
    """A stored value; one that no longer parses (rules tightened) counts as unset."""
    try:
        return parse_value(name, json.loads(stored))
    except (ValueError, InvalidInput):
        return SPECS[name].default


@dataclass(frozen=True, slots=True)
class Effective:
    name: Name
    value: PreferenceValue
    level: str
    """The level the value came from, or ``default``."""


def resolve(name: Name, set_at: Mapping[Level, PreferenceValue]) -> Effective:
    """The effective value of ``name`` from the levels where it is set (levels it
    is not valid at are ignored)."""
    spec = SPECS[name]
    for level in PRECEDENCE:
        if level in spec.levels and level in set_at:
            return Effective(name, set_at[level], level.value)
    return Effective(name, spec.default, DEFAULT_LEVEL)


def resolve_all(set_at: Mapping[Name, Mapping[Level, PreferenceValue]]) -> list[Effective]:
    """Every preference, in the order of ``Name``."""
    return [resolve(name, set_at.get(name, {})) for name in Name]


def parse_text(name: Name, text: str) -> PreferenceValue:
    """A value typed at a terminal, as JSON would carry it: ``true``/``on``,
    ``false``/``off`` for switches, digits for seconds, ``any`` or a comma list of
    app ids for ``accept_apps``. What does not convert is passed on as typed, for
    the node to refuse with its own words."""
    text = text.strip()
    lowered = text.lower()
    if name in (Name.MUTE, Name.SEND_RECEIPTS):
        switch = {"true": True, "on": True, "yes": True, "false": False, "off": False, "no": False}
        return switch.get(lowered, text)
    if name is Name.DISAPPEARING_TIMER:
        return int(text) if text.isdigit() else lowered
    if name is Name.ACCEPT_APPS:
        if lowered in ("any", "null"):
            return None
        return [item.strip() for item in text.split(",") if item.strip()]
    return lowered
