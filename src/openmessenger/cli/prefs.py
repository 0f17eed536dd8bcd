"""``openmessenger prefs get|set|clear``: preferences at account, contact, device
and conversation level (docs/cli.md, docs/conversations.md). Thin: parse, call
the SDK, print."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from openmessenger.cli.device import (
    DEFAULT_PROFILE,
    JsonOption,
    ProfileOption,
    ServerOption,
    _print,
    _print_lines,
    _run,
)
from openmessenger.client import Client
from openmessenger.client.preferences import Preference
from openmessenger.core.errors import InvalidInput
from openmessenger.core.preferences import parse_name, parse_text

prefs_app = typer.Typer(help="Your preferences: who may reach you, mute, timers, receipts.")

ContactOption = Annotated[
    str | None, typer.Option("--contact", metavar="ADDRESS", help="for this contact")
]
ConversationOption = Annotated[
    str | None, typer.Option("--conversation", metavar="ID", help="for this conversation")
]
DeviceOption = Annotated[bool, typer.Option("--device", help="for this device")]
AccountOption = Annotated[bool, typer.Option("--account", help="for the account (the default)")]


def register(app: typer.Typer) -> None:
    app.add_typer(prefs_app, name="prefs")
    prefs_app.command("get")(get)
    prefs_app.command("set")(set_)
    prefs_app.command("clear")(clear)


def _one_level(account: bool, contact: str | None, conversation: str | None, device: bool) -> None:
    if sum((account, contact is not None, conversation is not None, device)) > 1:
        raise typer.BadParameter("use only one of --account, --contact, --conversation, --device")


def _text(value: Any) -> str:
    if value is None:
        return "any"
    if isinstance(value, list):
        return ",".join(str(v) for v in value) or "none"
    if isinstance(value, str):
        return value
    return json.dumps(value)


def _json(pref: Preference) -> dict[str, Any]:
    return {"name": pref.name, "value": pref.value, "level": pref.level}


def get(
    name: Annotated[str | None, typer.Argument(help="one preference (default: all)")] = None,
    contact: ContactOption = None,
    conversation: ConversationOption = None,
    device: DeviceOption = False,
    server: ServerOption = None,
    profile: ProfileOption = DEFAULT_PROFILE,
    json_: JsonOption = False,
) -> None:
    """Show the effective preferences for this device (and a contact or a
    conversation), with the level each comes from."""
    _one_level(False, contact, conversation, device)

    async def action(client: Client) -> None:
        found = await client.preferences(contact=contact, conversation=conversation)
        if name is not None:
            try:
                wanted = parse_name(name, field="NAME").value
            except InvalidInput as exc:
                raise typer.BadParameter(exc.reason, param_hint="NAME") from None
            found = {wanted: found[wanted]} if wanted in found else {}
        shown = list(found.values())
        _print_lines(
            map(_json, shown), (f"{p.name}\t{_text(p.value)}\t({p.level})" for p in shown), json_
        )

    _run(server, profile, action)


def set_(
    name: Annotated[str, typer.Argument(help="accept_requests, accept_apps, mute, ...")],
    value: Annotated[
        str,
        typer.Argument(
            help="off|verified|anyone; true|false; seconds or off; app ids (a,b) or any"
        ),
    ],
    account: AccountOption = False,
    contact: ContactOption = None,
    conversation: ConversationOption = None,
    device: DeviceOption = False,
    server: ServerOption = None,
    profile: ProfileOption = DEFAULT_PROFILE,
    json_: JsonOption = False,
) -> None:
    """Set a preference for the account (default), a contact, a conversation or this device."""
    _one_level(account, contact, conversation, device)
    try:
        parsed: Any = parse_text(parse_name(name), value)
    except InvalidInput:
        parsed = value  # an unknown name: the node refuses it, naming the field

    async def action(client: Client) -> None:
        stored = await client.set_preference(
            name, parsed, contact=contact, conversation=conversation, device=device
        )
        _print(_json(stored), f"{stored.name}\t{_text(stored.value)}\t({stored.level})", json_)

    _run(server, profile, action)


def clear(
    name: Annotated[str, typer.Argument(help="the preference to unset at that level")],
    account: AccountOption = False,
    contact: ContactOption = None,
    conversation: ConversationOption = None,
    device: DeviceOption = False,
    server: ServerOption = None,
    profile: ProfileOption = DEFAULT_PROFILE,
    json_: JsonOption = False,
) -> None:
    """Unset a preference at one level: the next wider level (or the default) applies."""
    _one_level(account, contact, conversation, device)

    async def action(client: Client) -> None:
        await client.clear_preference(
            name, contact=contact, conversation=conversation, device=device
        )
        level = (
            "contact"
            if contact
            else "conversation"
            if conversation
            else "device"
            if device
            else "account"
        )
        _print({"name": name, "level": level, "cleared": True}, f"{name}: cleared ({level})", json_)

    _run(server, profile, action)
